"""A captured field of view: pixels plus where and when it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.core.detections import Detections


@dataclass(frozen=True)
class Frame:
    """One field of view. `image` is HxWx3 BGR uint8 (OpenCV order)."""

    image: np.ndarray
    index: int
    origin: str  # file path, "camera:0@frame", "synthetic:SEED:INDEX", ...
    captured_at: float  # unix seconds
    truth: Detections | None = None  # exact boxes when the source knows them (synthetic)


@dataclass(frozen=True)
class Unreadable:
    """A field the source could not decode: recorded with its reason, never counted."""

    index: int
    origin: str
    reason: str
