"""Image classifiers (WBC crop differential, ALL field subtype): a verified model and the
exact preprocessing it was trained with. Pure numpy/OpenCV around the backend: no torch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import HemascopeError
from edge.inference.backends import Backend, load_backend
from edge.inference.colour import METHOD as COLOUR
from edge.inference.colour import colour_features
from edge.inference.dyes import METHOD as DYES
from edge.inference.dyes import normalise
from edge.inference.head import softmax
from edge.inference.manifest import ModelManifest, check_input_shape, verify_model
from edge.inference.stain import MIN_CELLS, StainShift, estimate


def resize_rgb(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 BGR uint8 -> size x size x 3 RGB uint8 (INTER_AREA, aspect not kept).

    Training caches its images through this very function, so the device sees what the
    model saw."""
    resized = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def to_batch(images_rgb: list[np.ndarray]) -> np.ndarray:
    """List of HxWx3 RGB uint8 -> Nx3xHxW float32 in [0, 1]."""
    return np.ascontiguousarray(np.stack(images_rgb).transpose(0, 3, 1, 2), np.float32) / 255.0


def gray_world(image: np.ndarray) -> np.ndarray:
    """Scale each channel so the image mean is neutral grey (removes a global colour cast)."""
    pixels = image.astype(np.float32)
    means = pixels.reshape(-1, 3).mean(axis=0)
    gains = means.mean() / np.maximum(means, 1e-6)
    return np.clip(pixels * gains + 0.5, 0, 255).astype(np.uint8)


def _colour_rows(captured: list[np.ndarray], graph: list[np.ndarray]) -> np.ndarray:
    return np.stack([colour_features(a, b) for a, b in zip(captured, graph, strict=True)])


@dataclass(frozen=True)
class Prediction:
    class_id: int
    label: str
    score: float
    probabilities: np.ndarray  # (C,) float32, sums to 1


class Classifier:
    """Loads a `classify` model only after its manifest is checked whole: its sha256, its
    input, classes and head against the model's own, and its signature when `trusted_keys`
    is given."""

    def __init__(self, model_path: Path, backend: str = "onnxruntime", threads: int = 0,
                 trusted_keys: Sequence[str] | None = None) -> None:
        verified = verify_model(model_path, trusted_keys)
        self.manifest: ModelManifest = verified.manifest
        self.digest, self.signer = verified.digest, verified.signer
        if self.manifest.task != "classify" or self.manifest.input.resize != "area":
            raise HemascopeError(
                f"model {model_path.name} is a {self.manifest.task} model, not a classifier",
                "use a model exported from `hemascope train classify`")
        if self.manifest.input.height != self.manifest.input.width:
            raise HemascopeError(f"model {model_path.name} has a non-square input",
                                 "re-export the classifier")
        self.size = self.manifest.input.height
        self.dye_normalised = self.manifest.input.stain == DYES
        self.classes = list(self.manifest.classes)
        self.backend: Backend = load_backend(backend, model_path, threads)
        check_input_shape(self.manifest, self.backend.input_shape, model_path.name)
        self._check_outputs(model_path.name)
        self.head = self.manifest.head
        self._linear: tuple[np.ndarray, np.ndarray] | None = None  # the head, decoded once
        self._colour: tuple[np.ndarray, np.ndarray] | None = None  # its colour inputs' scaling
        if self.head is not None:
            if self.head.features not in (None, COLOUR):
                raise HemascopeError(
                    f"{model_path.name}'s head reads {self.head.features!r} features, which "
                    "this hemascope does not compute", "update hemascope on this device")
            try:
                self._linear = self.head.arrays()
                self._colour = self.head.feature_arrays()
                self.head.means()  # a reference of the wrong size fails here, not mid-run
            except ValueError as exc:
                raise HemascopeError(f"manifest of {model_path.name}: {exc}",
                                     "restore the manifest that came with the model") from None
            if self.head.classes != len(self.classes):
                raise HemascopeError(
                    f"manifest of {model_path.name} has a head for {self.head.classes} classes "
                    f"and names {len(self.classes)}",
                    "restore the manifest that came with the model")
            self._check_embedding(model_path.name)

    def _check_outputs(self, name: str) -> None:
        """Refuse a manifest whose classes do not fit the graph's probabilities (1, classes)."""
        shapes = self.backend.output_shapes
        fix = "restore the manifest that came with the model, or re-export both together"
        outputs = shapes[0][-1] if shapes and shapes[0] else -1
        if outputs not in (len(self.classes), -1):
            raise HemascopeError(f"manifest of {name} names {len(self.classes)} classes but "
                                 f"the model outputs {outputs}", fix)

    def _check_embedding(self, name: str) -> None:
        """Refuse a head (decoded) that does not fit the graph's embedding output (1, dim)."""
        assert self.head is not None
        shapes = self.backend.output_shapes
        fix = "restore the manifest that came with the model, or re-export both together"
        if len(shapes) < 2:
            raise HemascopeError(f"manifest of {name} carries a head but the model returns no "
                                 "embedding", fix)
        dim = self.head.embedding_dim
        if shapes[1][-1] not in (dim, -1):
            raise HemascopeError(f"manifest of {name} has a head for {dim}-dimensional "
                                 f"embeddings but the model returns {shapes[1][-1]}", fix)

    @property
    def calibrated(self) -> bool:
        """True for a model calibrated to a site (`hemascope calibrate`)."""
        return bool(self.manifest.calibration)

    @property
    def sha256(self) -> str:
        """The digest of the model as it classifies: its file's sha256, or for a model
        calibrated to a site (same file, new head) the sha256 of that and the head (with its
        colour inputs' method and scaling when it reads them)."""
        if not self.calibrated or self.head is None:
            return self.manifest.sha256
        text = f"{self.manifest.sha256}:{self.head.weights}:{self.head.bias}"
        if self.head.features is not None:
            text += f":{self.head.features}:{self.head.feature_mean}:{self.head.feature_scale}"
        return hashlib.sha256(text.encode()).hexdigest()

    def probabilities(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """(N, C) class probabilities for images already passed through `resize_rgb`: the
        graph's own, or the manifest's head on the graph's embedding when it has one."""
        if self._linear is not None:
            w, b = self._linear
            return softmax(self.head_inputs(images_rgb) @ w.T + b).astype(np.float32)
        probs = [self.backend.infer(to_batch([image]))[0][0] for image in self._stained(images_rgb)]
        return np.asarray(probs, dtype=np.float32)

    def _stained(self, images_rgb: list[np.ndarray]) -> list[np.ndarray]:
        """The images as the graph takes them: in the canonical dyes for a model trained so."""
        return [normalise(image) for image in images_rgb] if self.dye_normalised else images_rgb

    def stain_shift(self, embeddings: np.ndarray) -> StainShift | None:
        """The stain shift of one session's cells ((N, D) embeddings): None when the manifest
        has no reference or there are fewer than MIN_CELLS."""
        means = self.head.means() if self.head is not None else None
        if means is None or self._linear is None or len(embeddings) < MIN_CELLS:
            return None
        w, b = self._linear  # a site head's colour inputs after the embedding play no part
        return estimate(embeddings, means, w[:, :means.shape[1]], b)

    def embeddings(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """(N, D) pooled embeddings (the graph's second output) of prepared images."""
        return self._embed(self._stained(images_rgb))

    def colours(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """(N, F) colour histograms (`edge.inference.colour`) of prepared images."""
        return _colour_rows(images_rgb, self._stained(images_rgb))

    def head_inputs(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        """What the manifest's head reads: the embeddings, and for a head fitted with
        colour inputs (site calibration) the scaled colour histograms after them."""
        stained = self._stained(images_rgb)
        x = self._embed(stained)
        if self._colour is None:
            return x
        mean, scale = self._colour
        colours = (_colour_rows(images_rgb, stained) - mean) / scale
        return np.concatenate([x, colours], axis=1).astype(np.float32)

    def _embed(self, graph_inputs: list[np.ndarray]) -> np.ndarray:
        out = []
        for image in graph_inputs:
            outputs = self.backend.infer(to_batch([image]))
            if len(outputs) < 2:
                raise HemascopeError("this classifier's graph returns no embedding",
                                     "re-export it with `hemascope export onnx` (since 0.2)")
            out.append(outputs[1][0])
        return np.asarray(out, dtype=np.float32)

    def __call__(self, image_bgr: np.ndarray) -> Prediction:
        probs = self.probabilities([resize_rgb(image_bgr, self.size)])[0]
        cid = int(probs.argmax())
        return Prediction(cid, self.classes[cid], float(probs[cid]), probs)
