"""Field quality control: pure checks that tell a usable field of view from a bad one.

Pixel checks (`assess_image`) run before the detector, cell checks (`assess_cells`) after it,
and `DuplicateGuard` refuses the same field captured twice in a session. Every function takes
values and returns values: no I/O. Thresholds and how they were calibrated: docs/qc.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import QC_WORK_SIDE, QCConfig
from edge.core.detections import Detections
from edge.pipeline.scale import rbc_diameter

HASH_SIDE = 32  # fingerprint: DCT of a HASH_SIDE x HASH_SIDE grey thumbnail...
HASH_BAND = 16  # ...keeping its HASH_BAND x HASH_BAND lowest frequencies (255 bits, no DC)
OVERLAP_GRID = 160  # long side (cells) of the grid the box overlap is measured on


@dataclass(frozen=True)
class QCResult:
    """Verdict on one field: accepted, why not (human-readable), and the measured scores."""

    accepted: bool
    reasons: tuple[str, ...]
    scores: dict[str, float]


# (score, config limit, what a failure means); a `min_` limit rejects below, `max_` above.
IMAGE_RULES = (
    ("focus", "min_focus", "out of focus"),
    ("highlights", "max_highlights", "over-exposed"),
    ("shadows", "max_shadows", "dark areas"),
    ("brightness", "min_brightness", "under-exposed"),
    ("contrast", "min_contrast", "blank or uniform frame"),
    ("saturation", "min_saturation", "unstained or washed out"),
    ("saturation", "max_saturation", "colour cast"),
)
CELL_RULES = (
    ("cells", "min_cells", "empty field"),
    ("density", "max_cell_density", "overcrowded field"),
    ("overlap", "max_overlap", "overlapping cells"),
)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def judge(scores: dict[str, float], cfg: QCConfig,
          rules: tuple[tuple[str, str, str], ...]) -> QCResult:
    """Apply threshold rules to measured scores; the reasons name score and limit."""
    reasons = []
    for score, limit_name, meaning in rules:
        value, limit = scores[score], getattr(cfg, limit_name)
        if limit_name.startswith("min_") and value < limit:
            reasons.append(f"{meaning} ({score} {_fmt(value)} < {_fmt(limit)})")
        elif limit_name.startswith("max_") and value > limit:
            reasons.append(f"{meaning} ({score} {_fmt(value)} > {_fmt(limit)})")
    return QCResult(not reasons, tuple(reasons), scores)


def _work_image(image_bgr: np.ndarray) -> np.ndarray:
    """The field resized to QC_WORK_SIDE px on its short side, so scores ignore sensor size."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image, got {image_bgr.dtype} {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    scale = QC_WORK_SIDE / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image_bgr, size, interpolation=interpolation)


def image_scores(image_bgr: np.ndarray) -> dict[str, float]:
    """Pixel scores of one field: focus, exposure, illumination and stain."""
    small = _work_image(image_bgr)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel() / grey.size
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(grey))
    lap_std = float(cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))[1][0, 0])
    saturation = cv2.mean(cv2.cvtColor(small, cv2.COLOR_BGR2HSV))[1]
    return {
        "focus": 100 * lap_std / max(mean, 1.0),
        "highlights": float(hist[250:].sum()),
        "shadows": float(hist[:6].sum()),
        "brightness": float(np.searchsorted(np.cumsum(hist), 0.95)),
        "contrast": 100 * std / max(mean, 1.0),
        "saturation": float(saturation),
    }


def assess_image(image_bgr: np.ndarray, cfg: QCConfig) -> QCResult:
    """Checks that need only pixels (run before the detector)."""
    if not cfg.enabled:
        return QCResult(True, (), {})
    return judge(image_scores(image_bgr), cfg, IMAGE_RULES)


def box_overlap(xyxy: np.ndarray, image_shape: tuple[int, int]) -> float:
    """Share of the area covered by boxes that is covered by two or more of them."""
    if len(xyxy) < 2:
        return 0.0
    h, w = image_shape
    scale = OVERLAP_GRID / max(h, w)
    gh, gw = max(1, round(h * scale)), max(1, round(w * scale))
    b = np.rint(np.asarray(xyxy, np.float64) * scale).astype(np.int64)
    x0, x1 = np.clip(b[:, 0], 0, gw), np.clip(b[:, 2], 0, gw)
    y0, y1 = np.clip(b[:, 1], 0, gh), np.clip(b[:, 3], 0, gh)
    corners = np.zeros((gh + 1, gw + 1), np.int32)  # 2-D difference array of the boxes
    for ys, xs, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        np.add.at(corners, (ys, xs), sign)
    depth = corners.cumsum(0).cumsum(1)[:gh, :gw]
    covered = np.count_nonzero(depth >= 1)
    return np.count_nonzero(depth >= 2) / covered if covered else 0.0


def cell_scores(detections: Detections, image_shape: tuple[int, int],
                rbc_class_id: int) -> dict[str, float]:
    """Detector-based scores of one field: how many cells, how densely they cover it in
    red-cell units (cells x ruler^2 / field area: the same for any objective and camera; 0
    without a ruler), how much their boxes overlap."""
    h, w = image_shape
    ruler = rbc_diameter(detections, rbc_class_id, image_shape)
    density = len(detections) * ruler ** 2 / (h * w) if ruler else 0.0
    return {"cells": float(len(detections)), "density": density,
            "overlap": box_overlap(detections.xyxy, image_shape)}


def assess_cells(detections: Detections, image_shape: tuple[int, int], cfg: QCConfig,
                 rbc_class_id: int) -> QCResult:
    """Checks that need the detector output (run after it); image_shape is (height, width),
    `rbc_class_id` the detector's red-cell class (the ruler)."""
    if not cfg.enabled:
        return QCResult(True, (), {})
    return judge(cell_scores(detections, image_shape, rbc_class_id), cfg, CELL_RULES)


def fingerprint(image_bgr: np.ndarray) -> np.ndarray:
    """255-bit perceptual hash (bool array): signs of low DCT frequencies against their median.

    Low frequencies survive sensor noise and a few pixels of jitter but change when the stage
    moves by a large part of the field; the median makes it independent of exposure.
    """
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(grey, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    band = cv2.dct(thumb.astype(np.float32))[:HASH_BAND, :HASH_BAND].ravel()[1:]
    return band > np.median(band)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits between two fingerprints."""
    return int(np.count_nonzero(a != b))


class DuplicateGuard:
    """Remembers the accepted fields of one session and refuses re-captures of them."""

    def __init__(self, cfg: QCConfig) -> None:
        self.cfg = cfg
        self._prints = np.zeros((0, HASH_BAND * HASH_BAND - 1), bool)

    def __len__(self) -> int:
        return len(self._prints)

    def check(self, fp: np.ndarray, remember: bool = True) -> str | None:
        """A reason if the field with fingerprint `fp` re-captures a remembered one; else None
        (and remember it).

        Call it on a field that passed the other checks; `remember=False` only looks (e.g.
        before running the detector), so that a field rejected later is not remembered.
        """
        if not self.cfg.enabled:
            return None
        if len(self._prints):
            distances = np.count_nonzero(self._prints != fp, axis=1)
            nearest = int(distances.argmin())
            if distances[nearest] <= self.cfg.duplicate_distance:
                return (f"duplicate of accepted field {nearest + 1} of this session (distance "
                        f"{distances[nearest]} <= {self.cfg.duplicate_distance})")
        if remember:
            self._prints = np.vstack([self._prints, fp])
        return None
