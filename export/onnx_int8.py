"""ONNX int8: onnxruntime static quantization (QDQ, per-channel weights) on real frames."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from edge.inference.manifest import ModelManifest, load_verified
from export.artifact import derive_manifest
from export.calibration import Calibration

# Branch convolutions of a YOLO Detect head (box: cv2, class: cv3, extra tasks: cv4): they are
# ordinary conv layers and quantize like the backbone.
_HEAD_BRANCH = re.compile(r"/cv[234]\.\d+/")


def head_decode_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of the detection head that decode boxes and scores (last `/model.N/` block, outside
    its branch convolutions): DFL softmax + conv, anchor arithmetic, sigmoid, concat.

    They must stay float. Their output concatenates box coordinates in input pixels (0..416)
    with class probabilities (0..1) in one tensor, and the DFL expectation mixes values on very
    different scales: one shared int8 scale for such a tensor is ~2 px per step, so every score
    rounds to 0 and the model detects nothing (seen on this project's detector).
    """
    blocks = [int(m.group(1)) for n in model.graph.node
              if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not blocks:
        raise ValueError("not an Ultralytics YOLO graph: no /model.N/ node names")
    head = f"/model.{max(blocks)}/"
    return [n.name for n in model.graph.node
            if n.name.startswith(head) and not _HEAD_BRANCH.search(n.name)]


def classifier_float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of a classifier graph that stay float: everything before its first convolution
    (the white-point balance: TopK and per-image division, and the input normalisation) and
    after its last (pooling, the head, softmax): per-image statistics and probabilities have
    no range one int8 scale fits, and the convolutions are where the time goes."""
    convs = [i for i, n in enumerate(model.graph.node) if n.op_type == "Conv"]
    return [n.name for i, n in enumerate(model.graph.node)
            if i < convs[0] or i > convs[-1]]


class CalibrationReader:
    """onnxruntime CalibrationDataReader over the calibration tensors."""

    def __init__(self, input_name: str, tensors: Iterator[np.ndarray]) -> None:
        self.input_name = input_name
        self.tensors = tensors

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self.tensors, None)
        return None if tensor is None else {self.input_name: tensor}


def export_onnx_int8(reference: Path, out: Path, calibration: Calibration) -> ModelManifest:
    """Quantize the fp32 ONNX `reference` to `out` with activations calibrated on real frames.

    uint8 activations with int8 per-channel weights is the fast pair on x86 (VNNI) and ARM
    (dot-product) CPUs in onnxruntime; MinMax calibration is deterministic.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    task = load_verified(reference).task
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(reference), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        excluded = (classifier_float_nodes(model) if task == "classify"
                    else head_decode_nodes(model))
        reader = CalibrationReader(model.graph.input[0].name, calibration.tensors())
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            prepared, out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibMaxIntermediateOutputs": 32},
        )
    return derive_manifest(reference, out, "int8", "onnxruntime", {
        "target": "onnx-int8", "method": "onnxruntime quantize_static QDQ, per-channel, "
        "uint8 activations / int8 weights, MinMax", "excluded_nodes": len(excluded),
        "calibration": calibration.record(), "seconds": round(time.time() - started, 1)})
