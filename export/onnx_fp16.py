"""ONNX fp16: weights and activations in half precision, float32 input and output.

For GPUs (onnxruntime CUDA / TensorRT execution providers on a Jetson): half the size and
memory traffic. On a CPU the speed depends on the fp16 kernels of the onnxruntime build and
the processor (measured here: docs/benchmarks.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx

from edge.inference.manifest import ModelManifest, load_verified
from export.artifact import derive_manifest


def export_onnx_fp16(reference: Path, out: Path) -> ModelManifest:
    """Convert the fp32 ONNX `reference` to fp16 at `out` (graph input/output stay float32)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    load_verified(reference)
    started = time.time()
    model = convert_float_to_float16(onnx.load(str(reference)), keep_io_types=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return derive_manifest(reference, out, "fp16", "onnxruntime", {
        "target": "onnx-fp16", "method": "onnxruntime.transformers.float16, float32 I/O",
        "seconds": round(time.time() - started, 1)})
