"""Inference runtimes behind one protocol, chosen by the profile's `backend.type`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge.errors import HemascopeError


class Backend(Protocol):
    """Runs a model on a prepared input tensor."""

    input_shape: tuple[int, ...]  # e.g. (1, 3, 416, 416)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Model outputs for one input tensor (NCHW float32)."""
        ...


def load_backend(kind: str, model_path: Path, threads: int = 0) -> Backend:
    """Open `model_path` with the runtime named `kind`."""
    if kind == "onnxruntime":
        from edge.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, threads=threads)
    raise HemascopeError(f"unknown backend type {kind!r}", "use backend.type = \"onnxruntime\"")
