"""The field's own scale: the red-cell ruler, the scale the detector needs, and a field
detected again at that scale (real detector, real fields)."""

from itertools import pairwise

import cv2
import numpy as np
import pytest

from edge.core.detections import Detections
from edge.pipeline.scale import (
    _starts,
    detect_at_training_scale,
    field_ruler,
    training_scale,
)
from tests.conftest import needs_datasets


def _cells(side: float, n: int = 5, field: int = 1280) -> Detections:
    """n sure red cells of `side` px in a row (overlapping if need be), off the border."""
    xy = np.array([(2 + (field - side - 4) * i / (n - 1), 2) for i in range(n)], np.float32)
    return Detections.from_arrays(np.hstack([xy, xy + side]), np.ones(n), np.ones(n))


def test_the_scale_brings_red_cells_into_the_trained_range(detector):
    low, high = detector.manifest.input.rbc_diameter
    shape = (1280, 1280)  # letterboxed to 640: the detector sees cells at half size
    assert training_scale(detector, _cells(2 * low), shape) == 1.0
    small = training_scale(detector, _cells(low), shape)
    assert small == pytest.approx(2.0, rel=0.01)  # enlarge twice
    big = training_scale(detector, _cells(4 * high), shape)
    assert big == pytest.approx(0.5, rel=0.01)  # reduce by half
    assert training_scale(detector, Detections.empty(), shape) is None  # no ruler


def test_windows_cover_the_field_and_overlap_by_more_than_a_white_cell():
    for length, window, overlap in [(640, 320, 90.0), (1000, 300, 10.0), (480, 480, 50.0)]:
        starts = _starts(length, window, overlap)
        assert starts[0] == 0 and starts[-1] + window == length
        shared = [window - (b - a) for a, b in pairwise(starts)]
        assert all(s >= min(max(overlap, 0.25 * window), window / 2) - 1 for s in shared)


def test_a_wide_field_is_detected_again_at_the_trained_scale(detector):
    """Four real fields tiled and halved (a 4x wider view): detected whole, the small cells
    are missed; detected again in windows, the red-cell count comes back."""
    val = needs_datasets() / "detection" / "txl-pbc" / "images" / "val"
    labels = val.parent.parent / "labels" / "val"
    paths = [p for p in sorted(val.iterdir())
             if cv2.imread(str(p)).shape[:2] == (480, 640)][:4]
    assert len(paths) == 4
    tiles = [cv2.imread(str(p)) for p in paths]
    wide = cv2.resize(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]), (640, 480),
                      interpolation=cv2.INTER_AREA)
    truth = sum(int((np.loadtxt(labels / f"{p.stem}.txt", ndmin=2)[:, 0] == 1).sum())
                for p in paths)
    plain = detector(wide).detections
    again = detect_at_training_scale(detector, wide, plain)
    assert again is not plain
    rbc = detector.classes.index("RBC")
    sure = detector.manifest.thresholds.confidence
    def red(det: Detections) -> int:
        return int(((det.class_id == rbc) & (det.confidence >= sure)).sum())

    assert abs(red(again) - truth) < abs(red(plain) - truth)
    assert abs(red(again) - truth) <= 0.2 * truth
    assert field_ruler(detector, plain, wide.shape[:2]) is not None
    # a field at the trained scale is left as it is
    assert detect_at_training_scale(detector, tiles[0]) is not None
    one = detector(tiles[0]).detections
    assert detect_at_training_scale(detector, tiles[0], one) is one
