"""TensorRT backend: runs a serialized engine (`.engine`) built on the Jetson itself.

Engines are specific to the GPU and TensorRT version that built them, so they are built on
the device (`hemascope export tensorrt`, docs/devices/jetson-nano.md). Needs the `tensorrt`
Python bindings and pycuda, which exist only on a Jetson with JetPack: not testable on the
project's x86 machines, so this module is kept small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.core.errors import HemascopeError


def import_tensorrt(
    what: str = "backend.type = \"tensorrt\" needs TensorRT and pycuda",
    fix: str = ("only on a Jetson with JetPack: see docs/devices/jetson-nano.md; elsewhere use "
                "backend.type = \"onnxruntime\""),
) -> tuple[Any, Any]:
    """The tensorrt and pycuda.driver modules (with a CUDA context), or a one-line error."""
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise HemascopeError(f"{what} ({exc.name} is not installed)", fix) from None
    return trt, cuda


def _io(engine: Any) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, is_input) of every engine tensor, in binding order (TensorRT 8 and 10)."""
    if hasattr(engine, "num_io_tensors"):
        import tensorrt as trt

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [(n, tuple(engine.get_tensor_shape(n)),
                 engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT) for n in names]
    return [(engine.get_binding_name(i), tuple(engine.get_binding_shape(i)),
             engine.binding_is_input(i)) for i in range(engine.num_bindings)]


class TensorRTBackend:
    def __init__(self, model_path: Path) -> None:
        trt, self.cuda = import_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(model_path.read_bytes())
        if self.engine is None:
            raise HemascopeError(f"cannot load engine {model_path}",
                                 "rebuild it on this device: hemascope export tensorrt")
        self.context = self.engine.create_execution_context()
        io = _io(self.engine)
        self.input_shape = next(shape for _, shape, is_input in io if is_input)
        self.output_shape = next(shape for _, shape, is_input in io if not is_input)
        self.output_shapes = [self.output_shape]  # the one it returns
        self.host_out = np.empty(self.output_shape, dtype=np.float32)
        self.device = [self.cuda.mem_alloc(int(np.prod(s)) * 4) for _, s, _ in io]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.cuda.memcpy_htod(self.device[0], np.ascontiguousarray(tensor, dtype=np.float32))
        self.context.execute_v2([int(d) for d in self.device])
        self.cuda.memcpy_dtoh(self.host_out, self.device[-1])
        return [self.host_out.copy()]
