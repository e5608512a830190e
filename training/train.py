"""Train a cell detector with Ultralytics, offline, from a model yaml (no downloaded weights)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.core.errors import HemascopeError
from training.datasets import DatasetError, merge
from training.label_fixes import LoadedFixes
from training.offline import configure_offline
from training.provenance import Segments


@dataclass
class DetectTrainConfig:
    data: list[Path]
    out: Path
    model: str = "yolo11n.yaml"
    imgsz: int = 416
    epochs: int = 20
    batch: int = 16
    device: str = "cpu"
    weights: Path | None = None  # warm start from a previous checkpoint
    activation: str | None = None  # e.g. "relu": replaces the yaml's activation (SiLU)
    val_fraction: float = 0.2
    label_fixes: LoadedFixes | None = None  # reviewed corrections to training labels
    seed: int = 0


ACTIVATIONS = {"relu": "nn.ReLU()", "silu": "nn.SiLU()"}


def model_yaml(model: str, weights: Path | None, activation: str | None, out: Path) -> str:
    """The model yaml to build: `model`, or with `activation` the warm-start checkpoint's own
    architecture (else `model`'s) with that activation, written to OUT.

    ReLU is what makes an int8 CPU model pay: onnxruntime folds it into the int8 convolution,
    while each SiLU stays two int8 kernels of its own (docs/benchmarks.md).
    """
    if activation is None:
        return model
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    spec = dict(YOLO(str(weights)).model.yaml) if weights else yaml_model_load(model)
    # The file name keeps the scale letter (yolo11n-...): Ultralytics reads the scale from it.
    path = out / f"{Path(spec.pop('yaml_file', model)).stem}-{activation}.yaml"
    spec["activation"] = ACTIVATIONS[activation]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _finished(last: Path) -> bool:
    """Whether an Ultralytics last.pt belongs to a run that trained all its epochs (the same
    test Ultralytics asserts on resuming)."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)  # our own run's file
    return not 0 < ckpt.get("epoch", -1) + 1 < ckpt.get("train_args", {}).get("epochs", 0)


def train_detector(cfg: DetectTrainConfig, resume: bool = False) -> Path:
    """Merge the datasets, train, validate best.pt and write OUT/manifest.json. Returns it."""
    configure_offline()
    from ultralytics import YOLO

    last = cfg.out / "train" / "weights" / "last.pt"
    data_dir = cfg.out / "data"
    if resume and not last.is_file():
        raise HemascopeError(f"nothing to resume: {last} does not exist",
                             "start the run without --resume")
    if resume and _finished(last):
        raise HemascopeError(f"nothing to resume: the run in {cfg.out} trained all its epochs",
                             "start a new run with another --out (--weights to warm-start)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    segments = Segments(cfg.out, resume)

    def epoch_saved(trainer: Any) -> None:  # an Ultralytics trainer, its checkpoint just saved
        segments.tick(trainer.epoch)

    if resume:
        model = YOLO(str(last))
        model.add_callback("on_model_save", epoch_saved)
        model.train(resume=True)
        merge_info = json.loads((data_dir / "merge.json").read_text())
    else:
        try:
            report = merge(cfg.data, data_dir, cfg.val_fraction, cfg.label_fixes)
        except DatasetError as exc:
            raise HemascopeError(str(exc), "correct the dataset folder or the label fix it "
                                 "names") from None
        merge_info = {"data_digest": report.data_digest, "splits": report.splits,
                      "kept": report.kept, "duplicates_dropped": report.duplicates_dropped,
                      "label_fixes": report.label_fixes,
                      "sources": [str(p) for p in cfg.data]}
        architecture = model_yaml(cfg.model, cfg.weights, cfg.activation, cfg.out)
        # A new activation keeps the checkpoint's weights (same shapes) but not its graph.
        model = YOLO(str(cfg.weights) if cfg.weights and not cfg.activation else architecture)
        pretrained = str(cfg.weights) if cfg.weights and cfg.activation else bool(cfg.weights)
        model.add_callback("on_model_save", epoch_saved)
        model.train(
            data=str(data_dir / "data.yaml"), epochs=cfg.epochs, imgsz=cfg.imgsz,
            batch=cfg.batch, device=cfg.device, workers=0, project=str(cfg.out.resolve()),
            name="train", exist_ok=True, pretrained=pretrained, amp=cfg.device != "cpu",
            seed=cfg.seed, deterministic=True, plots=False,
            close_mosaic=max(1, cfg.epochs // 4),
            # Microscope fields have no "up": vertical flips are as valid as horizontal ones.
            flipud=0.5, fliplr=0.5,
        )
    best = cfg.out / "train" / "weights" / "best.pt"
    trained = YOLO(str(best))
    metrics = trained.val(data=str(data_dir / "data.yaml"), imgsz=cfg.imgsz,
                          batch=cfg.batch, device=cfg.device, plots=False,
                          project=str(cfg.out.resolve()), name="val", exist_ok=True)
    names = metrics.names
    spec = trained.model.yaml  # what was trained, whatever the command line said
    segments.tick()
    manifest = {
        "task": "detect",
        "classes": [names[i] for i in sorted(names)],
        "imgsz": cfg.imgsz,
        "architecture": Path(spec.get("yaml_file", cfg.model)).name,
        "activation": spec.get("activation", "nn.SiLU() (Ultralytics' default)"),
        "warm_start": str(cfg.weights) if cfg.weights else None,
        "epochs": cfg.epochs,
        "device": cfg.device,
        "data": merge_info,
        **segments.summary(),
        "val_metrics_ultralytics": {
            "mAP50": float(metrics.box.map50), "mAP50-95": float(metrics.box.map),
            "per_class_AP50": {names[int(c)]: float(metrics.box.ap50[i])
                               for i, c in enumerate(metrics.box.ap_class_index)},
        },
        "weights": str(best),
    }
    path = cfg.out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path
