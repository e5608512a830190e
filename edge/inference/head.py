"""A classifier's linear head (logits = embedding @ W.T + b), carried in its manifest.

A classifier graph that also returns its pooled embedding can have its head replaced
without touching the model file: site calibration writes a new head into a new manifest,
and `edge.inference.classifier` applies it on the device with numpy."""

from __future__ import annotations

import base64

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()


class LinearHead(BaseModel):
    """weights (C x D) and bias (C) as base64 of little-endian float32; optionally the
    reference for the stain check (`edge.inference.stain`): each class's mean embedding
    on the training labs (C x D) and the stain distance their own sessions reach. A head
    fitted by site calibration also reads the crop's colour histograms
    (`edge.inference.colour`, method `features`): its last F of D inputs are those, less
    `feature_mean`, over `feature_scale` (F values each)."""

    model_config = ConfigDict(extra="forbid")
    classes: int
    dim: int
    weights: str
    bias: str
    class_means: str | None = None
    reference_distance: float | None = None
    features: str | None = None
    feature_mean: str | None = None
    feature_scale: str | None = None

    @field_validator("weights", "bias", "class_means", "feature_mean", "feature_scale")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            base64.b64decode(value, validate=True)
        return value

    @classmethod
    def from_arrays(cls, weights: np.ndarray, bias: np.ndarray,
                    features: tuple[str, np.ndarray, np.ndarray] | None = None) -> LinearHead:
        """A head from arrays; `features`: (method, mean, scale) of its colour inputs."""
        c, d = weights.shape
        extra = {} if features is None else {
            "features": features[0], "feature_mean": _encode(features[1]),
            "feature_scale": _encode(features[2])}
        return cls(classes=c, dim=d, weights=_encode(weights), bias=_encode(bias), **extra)

    def feature_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, scale) of the colour inputs as float32, None for a head without them."""
        if self.features is None:
            return None
        if self.feature_mean is None or self.feature_scale is None:
            raise ValueError(f"head reads {self.features} features but carries no mean "
                             "and scale for them")
        mean = np.frombuffer(base64.b64decode(self.feature_mean), "<f4")
        scale = np.frombuffer(base64.b64decode(self.feature_scale), "<f4")
        if mean.size != scale.size or not 0 < mean.size < self.dim:
            raise ValueError(f"head has {mean.size} feature means and {scale.size} scales "
                             f"for {self.dim} inputs")
        return mean.astype(np.float32), scale.astype(np.float32)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights, bias) as float32; a size that does not match is a ValueError."""
        w = np.frombuffer(base64.b64decode(self.weights), "<f4")
        b = np.frombuffer(base64.b64decode(self.bias), "<f4")
        if w.size != self.classes * self.dim or b.size != self.classes:
            raise ValueError(f"head holds {w.size} weights and {b.size} biases, not "
                             f"{self.classes}x{self.dim} and {self.classes}")
        return w.reshape(self.classes, self.dim).astype(np.float32), b.astype(np.float32)

    @property
    def embedding_dim(self) -> int:
        """How many of the head's inputs are the graph's embedding (all but colour inputs)."""
        colour = self.feature_arrays()
        return self.dim - (len(colour[0]) if colour else 0)

    def means(self) -> np.ndarray | None:
        """The stain check's class means (C x embedding_dim float32; the training labs', or
        a calibrated site's), None when the head has none."""
        if self.class_means is None:
            return None
        m = np.frombuffer(base64.b64decode(self.class_means), "<f4")
        d = self.embedding_dim
        if m.size != self.classes * d:
            raise ValueError(f"head holds {m.size} class-mean values, not {self.classes}x{d}")
        return m.reshape(self.classes, d).astype(np.float32)

    def with_reference(self, means: np.ndarray, distance: float | None) -> LinearHead:
        """This head with a stain-check reference (`distance` None: not measured)."""
        return self.model_copy(update={
            "class_means": _encode(means),
            "reference_distance": None if distance is None else round(float(distance), 4)})
