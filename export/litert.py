"""LiteRT (TFLite) exports through Ultralytics' offline `format=litert` path (litert-torch; no
TensorFlow, no download), and their int8 quantization with ai-edge-quantizer on real frames.

Ultralytics writes box coordinates normalized to the input size (so int8 keeps score
resolution); `edge.inference.backends.litert` scales them back to input pixels.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.manifest import ModelManifest, load_verified
from export.artifact import derive_manifest
from export.calibration import Calibration
from training.offline import configure_offline


def check_same_model(checkpoint: Path, reference: Path) -> None:
    """The fp32 ONNX reference must come from this checkpoint, or the gate compares apples
    with pears (and the reference's thresholds and training record would be wrong)."""
    source = load_verified(reference).export.get("source_sha256")
    if source != file_sha256(checkpoint):
        raise HemascopeError(
            f"{reference.name} was not exported from {checkpoint.name} (its manifest names "
            f"source sha256 {str(source)[:12]}…)", "give the fp32 ONNX of this checkpoint")


def drop_metadata_zip(model: Path) -> None:
    """Cut the metadata zip Ultralytics appends to the .tflite flatbuffer: it holds the export
    time (in the JSON and the zip entry), the only thing that differs between two exports of
    one checkpoint. `edge` reads the hemascope manifest instead."""
    with zipfile.ZipFile(model) as zf:  # offsets are absolute: zipfile adds the prefix length
        start = min(info.header_offset for info in zf.infolist())
    with model.open("r+b") as fh:
        fh.truncate(start)


def convert_litert(checkpoint: Path, out: Path, imgsz: int) -> Path:
    """Ultralytics `format=litert` (fp32) of `checkpoint`, moved to `out`."""
    configure_offline()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:  # Ultralytics writes beside the checkpoint
        copy = Path(shutil.copy(checkpoint, tmp))
        produced = YOLO(str(copy)).export(format="litert", imgsz=imgsz, device="cpu")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(produced, out)
    drop_metadata_zip(out)
    return out


def quantize_litert(fp32: Path, out: Path, calibration: Calibration,
                    integer_io: bool = False) -> Path:
    """Static int8 (int8 weights and activations) of a LiteRT model, calibrated on real frames.

    `integer_io` also quantizes the graph input and output (a full-integer model, as the Edge
    TPU compiler wants); otherwise they stay float32 and the model runs anywhere.
    """
    from ai_edge_quantizer import qtyping, quantizer, recipe

    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    if not integer_io:
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            qt.update_quantization_recipe(regex=".*", operation_name=op,
                                          algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    samples = [{"args_0": t} for t in calibration.tensors()]
    result = qt.calibrate({"serving_default": samples})
    out.parent.mkdir(parents=True, exist_ok=True)
    qt.quantize(calibration_result=result).export_model(str(out), overwrite=True)
    return out


def export_litert(checkpoint: Path, reference: Path, out: Path,
                  calibration: Calibration | None = None,
                  integer_io: bool = False) -> ModelManifest:
    """fp32 LiteRT of `checkpoint` (or int8 with `calibration`) at the reference's input size;
    the manifest is derived from the fp32 ONNX `reference` of the same checkpoint."""
    check_same_model(checkpoint, reference)
    size = load_verified(reference).input.height
    started = time.time()
    if calibration is None:
        convert_litert(checkpoint, out, size)
        precision, target, extra = "fp32", "litert", {}
    else:
        fp32 = convert_litert(checkpoint, out.with_name(f"{out.stem}.fp32.tmp.tflite"), size)
        try:
            quantize_litert(fp32, out, calibration, integer_io)
        finally:
            fp32.unlink(missing_ok=True)
        precision = "int8"
        target = "edgetpu" if integer_io else "litert-int8"
        extra = {"calibration": calibration.record(), "io": "int8" if integer_io else "float32",
                 "method": "ai-edge-quantizer static_wi8_ai8"}
    return derive_manifest(reference, out, precision, "litert", {
        "target": target, "source_checkpoint": checkpoint.name,
        "source_sha256": file_sha256(checkpoint), "converter": "ultralytics format=litert",
        **extra, "seconds": round(time.time() - started, 1)})
