"""The cell detector: a verified model, its runtime, and the pre/post-processing around it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.backends import Backend, load_backend
from edge.detect import decode_yolo, letterbox, to_tensor
from edge.detections import Detections
from edge.errors import HemascopeError
from edge.manifest import ModelManifest, load_verified


@dataclass(frozen=True)
class Timed:
    detections: Detections
    timings_ms: dict[str, float]


class Detector:
    """Loads a model only after its sha256 matches its manifest."""

    def __init__(self, model_path: Path, backend: str = "onnxruntime", threads: int = 0,
                 confidence: float | None = None, iou: float | None = None,
                 expected_size: int | None = None) -> None:
        self.model_path = model_path
        self.manifest: ModelManifest = load_verified(model_path)
        size = self.manifest.input.height
        if expected_size is not None and (size, self.manifest.input.width) != (expected_size,) * 2:
            raise HemascopeError(
                f"model {model_path.name} takes {size}x{self.manifest.input.width} input but the "
                f"profile expects {expected_size}",
                "install the model exported for this device, or fix model.input_size",
            )
        self.backend: Backend = load_backend(backend, model_path, threads)
        self.classes = list(self.manifest.classes)
        self.size = (self.manifest.input.height, self.manifest.input.width)
        self.confidence = confidence if confidence is not None else \
            self.manifest.thresholds.confidence
        self.iou = iou if iou is not None else self.manifest.thresholds.iou

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    def __call__(self, image: np.ndarray) -> Timed:
        t0 = time.perf_counter()
        padded, lb = letterbox(image, self.size, self.manifest.input.letterbox_pad)
        tensor = to_tensor(padded)
        t1 = time.perf_counter()
        output = self.backend.infer(tensor)[0]
        t2 = time.perf_counter()
        det = decode_yolo(output, lb, image.shape[:2], self.confidence, self.iou)
        t3 = time.perf_counter()
        return Timed(det, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3,
                           "postprocess": (t3 - t2) * 1e3})
