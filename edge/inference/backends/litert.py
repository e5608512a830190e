"""LiteRT (TFLite) backend: ai-edge-litert, else tflite-runtime; Coral Edge TPU as a delegate.

Models come from `hemascope export litert|litert-int8|edgetpu` (Ultralytics' LiteRT path):
NCHW float input, and box coordinates normalized to the input size so that int8 keeps the
score resolution; they are scaled back to input pixels here, as the decoder expects. Full-integer
models (Edge TPU) take and give int8, (de)quantized here at the boundary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.errors import HemascopeError

EDGETPU_LIBRARY = "libedgetpu.so.1"
_INSTALL = "pip install 'hemascope[pi]' (ai-edge-litert)"


def _interpreter_class() -> tuple[Any, Any]:
    """(Interpreter, load_delegate) from ai-edge-litert, or from tflite-runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, load_delegate
        except ImportError:
            raise HemascopeError("backend.type = \"litert\" needs a LiteRT runtime (not installed)",
                                 _INSTALL) from None
    return Interpreter, load_delegate


def _edgetpu_delegate(load_delegate: Any) -> Any:
    try:
        return load_delegate(EDGETPU_LIBRARY)
    except (OSError, ValueError) as exc:
        raise HemascopeError(
            f"cannot open the Coral Edge TPU ({EDGETPU_LIBRARY}): {str(exc).splitlines()[0]}",
            "install libedgetpu1-std and plug in the Coral (docs/devices/raspberry-pi.md)",
        ) from None


class LiteRTBackend:
    def __init__(self, model_path: Path, threads: int = 0, delegate: str = "none") -> None:
        compiled = model_path.name.endswith("_edgetpu.tflite")
        if delegate == "edgetpu" and not compiled:
            raise HemascopeError(
                f"{model_path.name} is not compiled for the Edge TPU (no _edgetpu.tflite suffix)",
                "run edgetpu_compiler on the `hemascope export edgetpu` model and point "
                "model.detector at the *_edgetpu.tflite it writes")
        interpreter_class, load_delegate = _interpreter_class()
        delegates = [_edgetpu_delegate(load_delegate)] if delegate == "edgetpu" else []
        try:
            self.interpreter = interpreter_class(
                model_path=str(model_path), experimental_delegates=delegates or None,
                num_threads=threads or len(os.sched_getaffinity(0)))  # 0: all cores (else 1)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            fix = ("set backend.delegate = \"edgetpu\" for a *_edgetpu.tflite model" if compiled
                   and not delegates else "re-export the model or restore it from the release")
            raise HemascopeError(f"cannot load model {model_path}: {str(exc).splitlines()[0]}",
                                 fix) from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in self.input["shape"])
        self.nhwc = shape[-1] == 3
        self.input_shape = (shape[0], shape[3], shape[1], shape[2]) if self.nhwc else shape
        self.output_shapes = [tuple(int(d) for d in self.output["shape"])]  # the one it returns

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        x = tensor.transpose(0, 2, 3, 1) if self.nhwc else tensor
        if self.input["dtype"] != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(
            x, dtype=self.input["dtype"]))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if y.dtype != np.float32:
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        else:
            y = y.copy()  # the interpreter reuses its buffer on the next invoke
        h, w = self.input_shape[2:]
        y[:, [0, 2]] *= w  # normalized cx, w -> input pixels
        y[:, [1, 3]] *= h
        return [y]
