"""Synthetic smear renderer: pixels, exact truth, determinism and realistic statistics.

Count and size ranges come from the 163 BCCD-sourced TXL-PBC fields (see the module docstring):
WBC 1.04, RBC 23.3 +- 3.4, platelets 1.18 per field; RBC boxes ~84-126 px, WBC ~140-257 px.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.capture.synthetic import PLATELET, RBC, WBC, SyntheticSource, render_field
from edge.core.detections import Detections
from edge.core.frame import Frame

N_FIELDS = 50


@pytest.fixture(scope="module")
def fields() -> list[tuple[np.ndarray, Detections]]:
    return [render_field(np.random.default_rng([2024, i])) for i in range(N_FIELDS)]


def _sizes(det: Detections) -> tuple[np.ndarray, np.ndarray]:
    return det.xyxy[:, 2] - det.xyxy[:, 0], det.xyxy[:, 3] - det.xyxy[:, 1]


def test_image_and_detections_types(fields):
    for image, det in fields[:10]:
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8
        assert det.xyxy.dtype == np.float32 and det.class_id.dtype == np.int64
        assert np.all(det.confidence == 1.0)
        assert set(det.class_id.tolist()) <= {WBC, RBC, PLATELET}


def test_other_sizes():
    image, det = render_field(np.random.default_rng(1), width=320, height=240)
    assert image.shape == (240, 320, 3)
    assert len(det) > 0 and np.all(det.xyxy[:, [2, 3]] <= [320, 240])


def test_boxes_inside_image_and_not_degenerate(fields):
    for _, det in fields:
        x0, y0, x1, y1 = det.xyxy.T
        assert np.all(x0 >= 0) and np.all(y0 >= 0) and np.all(x1 <= 640) and np.all(y1 <= 480)
        w, h = _sizes(det)
        assert np.all(w >= 4) and np.all(h >= 4)


def test_same_seed_same_field_and_other_index_differs():
    a_img, a_det = render_field(np.random.default_rng([7, 3]))
    b_img, b_det = render_field(np.random.default_rng([7, 3]))
    c_img, c_det = render_field(np.random.default_rng([7, 4]))
    assert np.array_equal(a_img, b_img)
    assert np.array_equal(a_det.xyxy, b_det.xyxy)
    assert np.array_equal(a_det.class_id, b_det.class_id)
    assert not np.array_equal(a_img, c_img)
    assert a_det.xyxy.shape != c_det.xyxy.shape or not np.array_equal(a_det.xyxy, c_det.xyxy)


def test_counts_per_field_match_real_smears(fields):
    counts = np.array([det.counts(3) for _, det in fields])
    wbc, rbc, plt = counts.mean(0)
    assert 0.9 <= wbc <= 1.3
    assert 20.0 <= rbc <= 26.5
    assert 0.7 <= plt <= 1.6
    assert np.mean(counts[:, WBC] == 1) >= 0.75  # mostly one white cell
    assert counts[:, WBC].max() <= 3 and counts[:, PLATELET].max() <= 4
    assert counts[:, RBC].min() >= 8 and counts[:, RBC].max() <= 34
    assert counts[:, RBC].std() > 1.5  # fields differ, as real ones do


def test_box_sizes_order_and_range(fields):
    sizes: dict[int, list[float]] = {WBC: [], RBC: [], PLATELET: []}
    inner_rbc: list[float] = []
    for _, det in fields:
        w, h = _sizes(det)
        for cls in sizes:
            sizes[cls] += list(np.sqrt(w * h)[det.class_id == cls])
        x0, y0, x1, y1 = det.xyxy.T
        inner = (det.class_id == RBC) & (x0 > 0) & (y0 > 0) & (x1 < 640) & (y1 < 480)
        inner_rbc += list(((w + h) / 2)[inner])
    mean = {cls: np.mean(v) for cls, v in sizes.items()}
    assert mean[WBC] > 1.5 * mean[RBC]
    assert mean[RBC] > 2.5 * mean[PLATELET]
    assert 85 <= np.median(inner_rbc) <= 115
    assert 150 <= np.median(sizes[WBC]) <= 240


def test_edge_cut_red_cells_are_labelled(fields):
    touching = []
    for _, det in fields:
        rbc = det.xyxy[det.class_id == RBC]
        touching += list((rbc[:, 0] <= 0) | (rbc[:, 1] <= 0) | (rbc[:, 2] >= 640)
                         | (rbc[:, 3] >= 480))
    assert 0.3 <= np.mean(touching) <= 0.6  # TXL-PBC: 47 % of RBC boxes touch the border


def test_darkest_pixels_are_nuclei_or_platelets(fields):
    checked = 0
    for image, det in fields:
        if not np.any(det.class_id == WBC):
            continue
        darkest = np.argsort(image[..., 1].ravel(), kind="stable")[:200]  # lowest green
        ys, xs = np.unravel_index(darkest, image.shape[:2])
        boxes = det.xyxy[det.class_id != RBC]
        inside = ((xs[:, None] >= boxes[:, 0]) & (xs[:, None] < boxes[:, 2])
                  & (ys[:, None] >= boxes[:, 1]) & (ys[:, None] < boxes[:, 3])).any(1)
        assert inside.mean() >= 0.95
        checked += 1
    assert checked >= N_FIELDS * 0.8


def test_white_cell_nucleus_is_dark_purple(fields):
    for image, det in fields[:20]:
        for x0, y0, x1, y1 in det.xyxy[det.class_id == WBC].astype(int):
            crop = image[y0:y1, x0:x1].reshape(-1, 3).astype(float)
            dark = crop[crop[:, 1] <= np.percentile(crop[:, 1], 10)]
            b, g, r = np.median(dark, 0)
            assert b > r > g and g < 120  # purple: blue > red > green, dark in green


def test_background_is_light_plasma(fields):
    for image, det in fields[:10]:
        free = np.ones(image.shape[:2], bool)
        for x0, y0, x1, y1 in det.xyxy.astype(int):
            free[y0:y1, x0:x1] = False
        b, g, r = np.median(image[free], 0)
        assert min(b, g, r) >= 175 and max(b, g, r) <= 215  # measured (192, 198, 195)


def test_source_frames_are_independent_of_count():
    long = list(SyntheticSource(count=10, seed=5).frames())
    short = list(SyntheticSource(count=3, seed=5).frames())
    assert len(long) == 10 and len(short) == 3
    for a, b in zip(long[:3], short, strict=True):
        assert isinstance(a, Frame) and a.truth is not None
        assert a.index == b.index and a.origin == b.origin == f"synthetic:5:{a.index}"
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.truth.xyxy, b.truth.xyxy)
    image, det = render_field(np.random.default_rng([5, 2]))
    assert np.array_equal(long[2].image, image) and np.array_equal(long[2].truth.xyxy, det.xyxy)
    assert SyntheticSource(seed=5).name == "synthetic:seed=5"
