"""The cell detector: a verified model, its runtime, and the pre/post-processing around it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.config import BackendConfig, ModelConfig, SignaturesConfig, ThresholdsConfig
from edge.core.detections import Detections
from edge.core.errors import HemascopeError
from edge.inference.backends import Backend, load_backend
from edge.inference.manifest import ModelManifest, check_input_shape, verify_model
from edge.inference.yolo import Letterbox, decode_yolo, letterbox_tensor


@dataclass(frozen=True)
class Timed:
    detections: Detections
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Prepared:
    """A field ready for the model: input tensor, how it was letterboxed, original shape."""

    tensor: np.ndarray
    letterbox: Letterbox
    shape: tuple[int, int]
    preprocess_ms: float


def check_usable(manifest: ModelManifest, model_path: Path, backend: str,
                 allow_failed_gate: bool = False) -> None:
    """Refuse a model made for another runtime, or one that failed its export accuracy gate."""
    if manifest.task != "detect":
        raise HemascopeError(f"model {model_path.name} is a {manifest.task} model, not a detector",
                             "point model.detector at a detector (e.g. the bundled detector.onnx)")
    if manifest.runtime != backend:
        raise HemascopeError(
            f"model {model_path.name} runs on {manifest.runtime} but the profile says "
            f"backend.type = {backend!r}",
            f"set backend.type = \"{manifest.runtime}\", or use the model exported for it")
    gate = manifest.gate
    if gate is not None and not gate.passed and not allow_failed_gate:
        raise HemascopeError(
            f"model {model_path.name} failed its accuracy gate ({gate.metric} {gate.value:.3f} "
            f"vs {gate.reference_value:.3f} for its reference): it is not releasable",
            "use the fp32 model, or re-export it (--accept-drop records an accepted drop)")


def check_outputs(manifest: ModelManifest, output_shapes: list[tuple[int, ...]],
                  name: str) -> None:
    """Refuse a manifest whose classes are not the model's: a YOLO head outputs
    (1, 4 + classes, anchors)."""
    shape = output_shapes[0] if output_shapes else ()
    if len(shape) != 3:
        raise HemascopeError(f"model {name} outputs shape {shape}, not a detector's "
                             "(1, 4 + classes, anchors)", "use a detector exported by hemascope")
    if shape[1] != -1 and shape[1] != 4 + len(manifest.classes):
        raise HemascopeError(
            f"manifest of {name} names {len(manifest.classes)} classes but the model outputs "
            f"{shape[1] - 4}", "restore the manifest that came with the model, or re-export "
            "both together")


class Detector:
    """Loads a model only after its manifest is checked whole: its sha256, its input and
    classes against the model's own, and its signature when `trusted_keys` is given."""

    def __init__(self, model_path: Path, backend: str = "onnxruntime", threads: int = 0,
                 confidence: float | None = None, iou: float | None = None,
                 expected_size: int | None = None, delegate: str = "none",
                 allow_failed_gate: bool = False,
                 trusted_keys: Sequence[str] | None = None) -> None:
        self.model_path = model_path
        verified = verify_model(model_path, trusted_keys)
        self.manifest: ModelManifest = verified.manifest
        self.digest, self.signer = verified.digest, verified.signer
        check_usable(self.manifest, model_path, backend, allow_failed_gate)
        size = self.manifest.input.height
        if expected_size is not None and (size, self.manifest.input.width) != (expected_size,) * 2:
            raise HemascopeError(
                f"model {model_path.name} takes {size}x{self.manifest.input.width} input but the "
                f"profile expects {expected_size}",
                "install the model exported for this device, or fix model.input_size",
            )
        self.backend: Backend = load_backend(backend, model_path, threads, delegate)
        check_input_shape(self.manifest, self.backend.input_shape, model_path.name)
        check_outputs(self.manifest, self.backend.output_shapes, model_path.name)
        self.classes = list(self.manifest.classes)
        self.size = (self.manifest.input.height, self.manifest.input.width)
        self.confidence = confidence if confidence is not None else \
            self.manifest.thresholds.confidence
        self.iou = iou if iou is not None else self.manifest.thresholds.iou

    @classmethod
    def from_config(cls, model: ModelConfig, backend: BackendConfig,
                    thresholds: ThresholdsConfig, signatures: SignaturesConfig,
                    threads: int | None = None) -> Detector:
        """The detector of a profile's [model], [backend], [thresholds] and [signatures]
        sections; `threads` overrides the backend's intra-op threads."""
        return cls(model.detector, backend.type,
                   backend.inference_threads() if threads is None else threads,
                   thresholds.confidence, thresholds.iou, model.input_size, backend.delegate,
                   trusted_keys=signatures.trusted())

    @property
    def sha256(self) -> str:
        """The model file's sha256 (`digest` also covers the manifest)."""
        return self.manifest.sha256

    def input_buffer(self) -> np.ndarray:
        """An array that `prepare` can write a field's model input into."""
        return np.empty((1, 3, *self.size), np.float32)

    def prepare(self, image: np.ndarray, out: np.ndarray | None = None) -> Prepared:
        """Letterbox and convert to the model's input, into `out` (from `input_buffer`) when
        given: it must not be in use by a detection still running (safe to run in another
        thread)."""
        t0 = time.perf_counter()
        tensor, lb = letterbox_tensor(image, self.size, self.manifest.input.letterbox_pad, out)
        return Prepared(tensor, lb, image.shape[:2], (time.perf_counter() - t0) * 1e3)

    def detect(self, prepared: Prepared) -> Timed:
        """Run the model on a prepared field and decode its boxes in original pixels."""
        t0 = time.perf_counter()
        output = self.backend.infer(prepared.tensor)[0]
        t1 = time.perf_counter()
        det = decode_yolo(output, prepared.letterbox, prepared.shape, self.confidence, self.iou)
        t2 = time.perf_counter()
        return Timed(det, {"preprocess": prepared.preprocess_ms, "infer": (t1 - t0) * 1e3,
                           "postprocess": (t2 - t1) * 1e3})

    def __call__(self, image: np.ndarray) -> Timed:
        return self.detect(self.prepare(image))
