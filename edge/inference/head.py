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
    on the training labs (C x D) and the stain distance their own sessions reach."""

    model_config = ConfigDict(extra="forbid")
    classes: int
    dim: int
    weights: str
    bias: str
    class_means: str | None = None
    reference_distance: float | None = None

    @field_validator("weights", "bias", "class_means")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            base64.b64decode(value, validate=True)
        return value

    @classmethod
    def from_arrays(cls, weights: np.ndarray, bias: np.ndarray) -> LinearHead:
        c, d = weights.shape
        return cls(classes=c, dim=d, weights=_encode(weights), bias=_encode(bias))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights, bias) as float32; a size that does not match is a ValueError."""
        w = np.frombuffer(base64.b64decode(self.weights), "<f4")
        b = np.frombuffer(base64.b64decode(self.bias), "<f4")
        if w.size != self.classes * self.dim or b.size != self.classes:
            raise ValueError(f"head holds {w.size} weights and {b.size} biases, not "
                             f"{self.classes}x{self.dim} and {self.classes}")
        return w.reshape(self.classes, self.dim).astype(np.float32), b.astype(np.float32)

    def means(self) -> np.ndarray | None:
        """The training class means (C x D float32), None when the head has none."""
        if self.class_means is None:
            return None
        m = np.frombuffer(base64.b64decode(self.class_means), "<f4")
        if m.size != self.classes * self.dim:
            raise ValueError(f"head holds {m.size} class-mean values, not "
                             f"{self.classes}x{self.dim}")
        return m.reshape(self.classes, self.dim).astype(np.float32)

    def with_reference(self, means: np.ndarray, distance: float | None) -> LinearHead:
        """This head with a stain-check reference (`distance` None: not measured)."""
        return self.model_copy(update={
            "class_means": _encode(means),
            "reference_distance": None if distance is None else round(float(distance), 4)})
