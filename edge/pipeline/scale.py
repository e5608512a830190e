"""The field's own scale, and the detector run at the scale it was trained at.

Red cells are about 7.5 um across in every smear, so the median red-cell box of a field is a
ruler that needs no calibration slide. A detector's manifest records the range of red-cell
diameters (in its input pixels) of the fields it was validated on; when a field's cells
reach the detector much smaller (a lower-power objective, a wider camera view) or larger
than that, the field is detected again at the nearest trained scale: enlarged in
overlapping windows, or reduced whole. Crops for the differential are sized in red-cell
diameters already."""

from __future__ import annotations

import cv2
import numpy as np

from edge.core.detections import Detections
from edge.core.labels import RBC
from edge.inference.detector import Detector
from edge.inference.yolo import nms

MIN_RULER_CELLS = 3
MARGIN = 1.15  # detect again only when the cells are this far outside the training range
WINDOW_OVERLAP = 0.25  # least share of a window shared with its neighbour...
OVERLAP_RBC = 3.0  # ... and at least this many red-cell diameters: wider than a white cell
MERGE_IOU = 0.5


def rbc_diameter(det: Detections, rbc_class_id: int, shape: tuple[int, int]) -> float | None:
    """Median longer side of the red-cell boxes that do not touch the field's border (cut
    cells would shrink it); None with fewer than MIN_RULER_CELLS of them."""
    h, w = shape
    boxes = det.xyxy[det.class_id == rbc_class_id]
    whole = boxes[(boxes[:, 0] > 1) & (boxes[:, 1] > 1) & (boxes[:, 2] < w - 1)
                  & (boxes[:, 3] < h - 1)]
    if len(whole) < MIN_RULER_CELLS:
        return None
    return float(np.median(np.maximum(whole[:, 2] - whole[:, 0], whole[:, 3] - whole[:, 1])))


def field_ruler(detector: Detector, det: Detections, shape: tuple[int, int]) -> float | None:
    """The field's red-cell diameter in its pixels, from the detections the detector is sure
    of (its operating threshold); None without enough whole red cells."""
    if RBC not in detector.classes:
        return None
    sure = det[det.confidence >= detector.manifest.thresholds.confidence]
    return rbc_diameter(sure, detector.classes.index(RBC), shape)


def training_scale(detector: Detector, det: Detections, shape: tuple[int, int]) -> float | None:
    """How much to enlarge the field (< 1: reduce) for its red cells to reach the detector
    within the range of sizes it was trained on (1: they do); None without a ruler in the
    field or a range in the manifest."""
    return _scale_for(detector, field_ruler(detector, det, shape), shape)


def _scale_for(detector: Detector, ruler: float | None, shape: tuple[int, int]) -> float | None:
    trained = detector.manifest.input.rbc_diameter
    if trained is None or ruler is None:
        return None
    seen = ruler * min(detector.size[0] / shape[0], detector.size[1] / shape[1])  # letterboxed
    low, high = trained
    if seen * MARGIN < low:
        return low / seen
    if seen > high * MARGIN:
        return high / seen
    return 1.0


def _starts(length: int, window: int, overlap: float) -> list[int]:
    """Window offsets covering [0, length), neighbours sharing at least `overlap` pixels
    (at most half a window)."""
    if window >= length:
        return [0]
    step = window - min(max(overlap, WINDOW_OVERLAP * window), window / 2)
    n = int(np.ceil((length - window) / step)) + 1
    return [round(v) for v in np.linspace(0, length - window, n)]


def _windows(detector: Detector, image: np.ndarray, scale: float, ruler: float) -> Detections:
    """Detections of overlapping windows, each 1/scale of the field, in field pixels; a box
    touching a window's inner edge is left to the neighbour that holds it whole (they
    overlap by more than a white cell)."""
    h, w = image.shape[:2]
    wh, ww = max(1, round(h / scale)), max(1, round(w / scale))
    overlap = OVERLAP_RBC * ruler
    parts = []
    for y in _starts(h, wh, overlap):
        for x in _starts(w, ww, overlap):
            det = detector(image[y:y + wh, x:x + ww]).detections
            b = det.xyxy
            inner = (((b[:, 0] <= 1) & (x > 0)) | ((b[:, 1] <= 1) & (y > 0))
                     | ((b[:, 2] >= ww - 1) & (x + ww < w)) | ((b[:, 3] >= wh - 1) & (y + wh < h)))
            kept = det[~inner]
            parts.append(Detections(kept.xyxy + np.float32([x, y, x, y]), kept.class_id,
                                    kept.confidence))
    return _merge(parts)


def _merge(parts: list[Detections]) -> Detections:
    """Concatenate, then per class keep the best of boxes seen twice in the overlaps."""
    xyxy = np.concatenate([p.xyxy for p in parts])
    cls = np.concatenate([p.class_id for p in parts])
    conf = np.concatenate([p.confidence for p in parts])
    keep: list[np.ndarray] = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        keep.append(idx[nms(xyxy[idx], conf[idx], MERGE_IOU)])
    order = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    return Detections(xyxy[order], cls[order], conf[order])


def detect_at_training_scale(detector: Detector, image: np.ndarray,
                             first: Detections | None = None) -> Detections:
    """The field's detections at the detector's training scale: `first` (the detections at
    the field's own scale, computed here when not given) when its ruler is close enough."""
    det = first if first is not None else detector(image).detections
    ruler = field_ruler(detector, det, image.shape[:2])
    scale = _scale_for(detector, ruler, image.shape[:2])
    if ruler is None or scale is None or scale == 1.0:
        return det
    if scale > 1:
        return _windows(detector, image, scale, ruler)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    down = detector(small).detections
    return Detections(down.xyxy / np.float32(scale), down.class_id, down.confidence)
