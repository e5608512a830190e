"""Inference runtimes behind one protocol, chosen by the profile's `backend.type`.

Each runtime is imported only when a profile asks for it, so a device carries only the one
it uses; a missing runtime is a one-line error naming what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge.core.errors import HemascopeError

BACKENDS = ("onnxruntime", "litert", "tensorrt")


class Backend(Protocol):
    """Runs a model on a prepared input tensor."""

    input_shape: tuple[int, ...]  # e.g. (1, 3, 416, 416); -1 where a size is dynamic
    output_shapes: list[tuple[int, ...]]  # each output's, e.g. [(1, 7, 3549)]; -1: dynamic

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Model outputs for one input tensor (NCHW float32 in [0, 1]); the detector output
        is float32 (1, 4 + C, A) with boxes in input pixels, whatever the runtime."""
        ...


def load_backend(kind: str, model_path: Path, threads: int = 0,
                 delegate: str = "none") -> Backend:
    """Open `model_path` with the runtime named `kind` (and its accelerator `delegate`)."""
    if delegate != "none" and kind != "litert":
        raise HemascopeError(f"backend.delegate = {delegate!r} needs backend.type = \"litert\"",
                             "set backend.type = \"litert\", or remove backend.delegate")
    if kind == "onnxruntime":
        from edge.inference.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, threads=threads)
    if kind == "litert":
        from edge.inference.backends.litert import LiteRTBackend

        return LiteRTBackend(model_path, threads=threads, delegate=delegate)
    if kind == "tensorrt":
        from edge.inference.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(model_path)
    raise HemascopeError(f"unknown backend type {kind!r}",
                         f"use backend.type = one of {', '.join(BACKENDS)}")
