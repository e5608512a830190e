"""ONNX (fp32) export of an Ultralytics detector checkpoint, with its hemascope manifest."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from edge.core.files import file_sha256
from edge.inference.manifest import (
    ModelInput,
    ModelManifest,
    ModelThresholds,
    write_manifest,
)
from training.offline import configure_offline
from training.provenance import command_line


def training_manifest(checkpoint: Path) -> dict:
    """The manifest `hemascope train` wrote for the run that produced this checkpoint: in the
    run folder (RUN/train/weights/best.pt), or beside a kept checkpoint under the same name
    (training/checkpoints/NAME.pt and NAME.json); {} when there is neither."""
    parents = checkpoint.resolve().parents
    for path in (parents[2] / "manifest.json" if len(parents) > 2 else None,
                 checkpoint.with_suffix(".json")):
        if path is not None and path.is_file():
            return json.loads(path.read_text())
    return {}


def drop_export_date(model_path: Path) -> None:
    """Remove the export timestamp Ultralytics writes into the ONNX metadata: it is the only
    thing that differs between two exports of one checkpoint, so without it re-exporting gives
    the same sha256 (the manifest keeps the provenance)."""
    import onnx

    model = onnx.load(str(model_path))
    kept = [p for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(model_path))


def export_onnx(checkpoint: Path, out: Path, imgsz: int | None = None,
                opset: int = 18) -> ModelManifest:
    """Export `checkpoint` to `out` (.onnx) and write `out`'s manifest beside it."""
    configure_offline()
    from ultralytics import YOLO

    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    train_info = training_manifest(checkpoint)
    model = YOLO(str(checkpoint))
    # the size it was trained at, recorded in the checkpoint itself (a committed checkpoint
    # has no run folder beside it)
    trained_at = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz")
    size = imgsz or trained_at or train_info.get("imgsz")
    if not size:
        raise ValueError(f"{checkpoint} does not record its training input size: pass --imgsz")
    size = int(size)
    started = time.time()
    produced = Path(model.export(format="onnx", imgsz=size, simplify=True, opset=opset,
                                 dynamic=False, half=False, device="cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if produced.resolve() != out.resolve():
        shutil.move(produced, out)
    drop_export_date(out)
    names = model.names
    manifest = ModelManifest(
        task="detect",
        classes=[names[i] for i in sorted(names)],
        input=ModelInput(height=size, width=size),
        thresholds=ModelThresholds(),
        file=out.name,
        sha256=file_sha256(out),
        precision="fp32",
        training=train_info,
        export={"command": command_line(), "source_checkpoint": checkpoint.name,
                "source_sha256": file_sha256(checkpoint), "opset": opset,
                "seconds": round(time.time() - started, 1)},
    )
    write_manifest(out, manifest)
    return manifest
