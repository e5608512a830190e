"""Detections: numpy arrays of boxes, class ids and scores for one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Boxes in pixel xyxy of the original image, one row per object."""

    xyxy: np.ndarray  # (N, 4) float32
    class_id: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        shapes = (self.xyxy.shape, self.class_id.shape, self.confidence.shape)
        if shapes != ((n, 4), (n,), (n,)):
            raise ValueError(
                f"inconsistent detections: xyxy {self.xyxy.shape}, class_id "
                f"{self.class_id.shape}, confidence {self.confidence.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def from_arrays(cls, xyxy, class_id, confidence=None) -> Detections:
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        class_id = np.asarray(class_id, np.int64).reshape(-1)
        conf = (np.ones(len(xyxy), np.float32) if confidence is None
                else np.asarray(confidence, np.float32).reshape(-1))
        return cls(xyxy, class_id, conf)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, mask: np.ndarray | slice) -> Detections:
        return Detections(self.xyxy[mask], self.class_id[mask], self.confidence[mask])

    def counts(self, num_classes: int) -> np.ndarray:
        """Objects per class id, length num_classes."""
        return np.bincount(self.class_id, minlength=num_classes)[:num_classes]
