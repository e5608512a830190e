"""TensorRT engines, built ON the Jetson from the fp32 ONNX (FP16, or INT8 with a calibration
cache from the same calibration frames as the other int8 targets).

An engine only runs on the GPU and TensorRT version that built it, and TensorRT cannot be
installed on the project's x86 machines: this module is imported lazily and fails with one
line off-Jetson. Steps and versions: docs/devices/jetson-nano.md. Not testable here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.errors import HemascopeError
from edge.inference.backends.tensorrt import import_tensorrt
from edge.inference.manifest import ModelManifest, load_verified
from export.artifact import derive_manifest
from export.calibration import Calibration


def _calibrator(trt: Any, cuda: Any, calibration: Calibration, cache: Path) -> Any:
    """An entropy calibrator over the calibration frames that writes/reuses `cache`."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.frames = calibration.tensors()
            self.memory = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            frame = next(self.frames, None)
            if frame is None:
                return None
            frame = np.ascontiguousarray(frame, dtype=np.float32)
            if self.memory is None:
                self.memory = cuda.mem_alloc(frame.nbytes)
            cuda.memcpy_htod(self.memory, frame)
            return [int(self.memory)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(reference: Path, out: Path, precision: str,
                 calibration: Calibration | None = None, workspace_mb: int = 1024
                 ) -> ModelManifest:
    """Build `out` (.engine) from the fp32 ONNX `reference` with TensorRT's Python API.

    precision: "fp16", or "int8" (INT8 with FP16 fallback) calibrated on `calibration`; the
    calibration cache is kept beside the engine (`out`.calib) for trtexec --calib.
    """
    trt, cuda = import_tensorrt(
        "`hemascope export tensorrt` runs on the Jetson itself",
        "copy the .onnx and its .json to the Jetson and run it there "
        "(docs/devices/jetson-nano.md)")
    load_verified(reference)
    started = time.time()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(reference.read_bytes()):
        raise HemascopeError(f"TensorRT cannot parse {reference.name}: {parser.get_error(0)}",
                             "re-export the ONNX with --opset 13 for TensorRT 8.2 (JetPack 4.6)")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    config.set_flag(trt.BuilderFlag.FP16)
    cache = out.with_suffix(".calib")
    if precision == "int8":
        if calibration is None:
            raise ValueError("an int8 engine needs calibration frames (--calib)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, cuda, calibration, cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise HemascopeError(f"TensorRT could not build an engine from {reference.name}",
                             "see the TensorRT messages above")
    out.write_bytes(bytes(serialized))
    extra = {"calibration": calibration.record(), "calibration_cache": cache.name} \
        if precision == "int8" and calibration else {}
    return derive_manifest(reference, out, precision, "tensorrt", {
        "target": "tensorrt", "tensorrt": trt.__version__, **extra,
        "seconds": round(time.time() - started, 1)})
