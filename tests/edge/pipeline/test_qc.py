"""Field quality control: pixel checks, cell checks and the duplicate guard (edge/qc.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.capture.folder import read_image
from edge.core.detections import Detections
from edge.pipeline.qc import (
    DuplicateGuard,
    QCConfig,
    assess_cells,
    assess_image,
    box_overlap,
    cell_scores,
    fingerprint,
    hamming,
    image_scores,
)
from tests.conftest import needs_datasets

CFG = QCConfig()


def render_field(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A stained-smear-like field drawn at 4x and reduced to width x height (area average).

    Red cells are pink rings with a pale centre, one white cell is a purple disc; the same
    seed and aspect give the same field at any size, as a camera of another resolution would.
    """
    rng = np.random.default_rng(seed)
    s = 4 * width / 640
    big = np.full((4 * height, 4 * width, 3), (228, 220, 238), np.uint8)
    for _ in range(45):
        c = (int(rng.uniform(0, 4 * width)), int(rng.uniform(0, 4 * height)))
        r = int(rng.uniform(26, 34) * s)
        cv2.circle(big, c, r, (160, 140, 215), -1, cv2.LINE_AA)
        cv2.circle(big, c, r // 2, (200, 190, 232), -1, cv2.LINE_AA)
    cv2.circle(big, (int(2.2 * width), int(1.8 * height)), int(44 * s), (150, 60, 110), -1,
               cv2.LINE_AA)
    return cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)


def blur(image: np.ndarray, frac: float = 0.01) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), frac * min(image.shape[:2]))


def gain(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=factor)


def has_reason(result, words: str) -> bool:
    return any(r.startswith(words) for r in result.reasons)


@pytest.fixture(scope="module")
def field() -> np.ndarray:
    return render_field(640, 480)


@pytest.fixture(scope="module")
def real_fields() -> list[np.ndarray]:
    """Two held-out images of each source in the shared sets (BCCD, BCD, PBC, Raabin)."""
    val = needs_datasets() / "detection" / "txl-pbc" / "images" / "val"
    by_shape: dict[tuple[int, int], list[np.ndarray]] = {}
    for path in sorted(val.iterdir())[:80]:
        image = read_image(path)
        by_shape.setdefault(image.shape[:2], []).append(image)
    return [im for ims in by_shape.values() for im in ims[:2]]


# --- pixel checks on a rendered field -------------------------------------------------------

def test_sharp_rendered_field_is_accepted(field):
    result = assess_image(field, CFG)
    assert result.accepted, result.reasons
    assert set(result.scores) == {"focus", "highlights", "shadows", "brightness", "contrast",
                                  "saturation"}


@pytest.mark.parametrize("frac", [0.01, 0.02])
def test_blurred_field_is_rejected_for_focus(field, frac):
    result = assess_image(blur(field, frac), CFG)
    assert not result.accepted
    assert has_reason(result, "out of focus (focus ")
    assert result.scores["focus"] < CFG.min_focus < assess_image(field, CFG).scores["focus"]


def test_exposure_errors_are_rejected_with_their_reason(field):
    assert has_reason(assess_image(gain(field, 1.8), CFG), "over-exposed (highlights ")
    assert has_reason(assess_image(gain(field, 0.35), CFG), "under-exposed (brightness ")


@pytest.mark.parametrize(("name", "frame", "reason"), [
    ("black", np.zeros((480, 640, 3), np.uint8), "under-exposed"),
    ("white", np.full((480, 640, 3), 255, np.uint8), "over-exposed"),
    ("mid grey", np.full((480, 640, 3), 128, np.uint8), "blank or uniform frame"),
    ("magenta", np.full((480, 640, 3), (255, 0, 255), np.uint8), "colour cast"),
])
def test_uniform_frames_are_rejected(name, frame, reason):
    result = assess_image(frame, CFG)
    assert not result.accepted, name
    assert has_reason(result, reason), result.reasons
    assert has_reason(result, "blank or uniform frame"), result.reasons


def test_lamp_off_and_blank_slide_frames_are_rejected():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 2, (480, 640, 3))
    lamp_off = np.clip(3 + noise, 0, 255).astype(np.uint8)
    assert has_reason(assess_image(lamp_off, CFG), "under-exposed")
    assert has_reason(assess_image(lamp_off, CFG), "dark areas")
    # bright glass without a smear: vignetting and sensor noise, nothing else
    yy, xx = np.mgrid[-1:1:480j, -1:1:640j]
    glass = 225 - 12 * (xx**2 + yy**2)
    blank = np.clip(glass[..., None] * (1.0, 0.97, 1.02) + noise, 0, 255).astype(np.uint8)
    result = assess_image(blank, CFG)
    assert has_reason(result, "blank or uniform frame"), result.scores


def test_focus_does_not_depend_on_image_size():
    small = render_field(640, 480, seed=3)
    f_small = image_scores(small)["focus"]
    assert image_scores(render_field(1280, 960, seed=3))["focus"] == pytest.approx(
        f_small, rel=0.05)
    for width in (800, 1024, 1920):
        field = render_field(width, width * 3 // 4, seed=3)
        assert image_scores(field)["focus"] == pytest.approx(f_small, rel=0.1), width
    # an upscaled copy carries no new detail, so it must not look sharper or blurrier
    upscaled = cv2.resize(small, (1280, 960), interpolation=cv2.INTER_CUBIC)
    assert image_scores(upscaled)["focus"] == pytest.approx(f_small, rel=0.1)


def test_assess_image_is_pure_and_can_be_disabled(field):
    before = field.copy()
    first, second = assess_image(field, CFG), assess_image(field, CFG)
    assert first == second and np.array_equal(field, before)
    off = assess_image(np.zeros((8, 8, 3), np.uint8), QCConfig(enabled=False))
    assert off.accepted and off.reasons == () and off.scores == {}


def test_non_bgr_input_is_refused():
    with pytest.raises(ValueError, match="BGR uint8"):
        assess_image(np.zeros((48, 64), np.uint8), CFG)


# --- pixel checks on real fields ------------------------------------------------------------

def test_real_fields_accepted_and_their_degradations_rejected(real_fields):
    assert len(real_fields) >= 8
    for image in real_fields:
        assert assess_image(image, CFG).accepted, assess_image(image, CFG).reasons
        assert has_reason(assess_image(blur(image), CFG), "out of focus")
        assert has_reason(assess_image(gain(image, 2.5), CFG), "over-exposed")
        assert has_reason(assess_image(gain(image, 0.35), CFG), "under-exposed")


def test_real_focus_survives_a_change_of_resolution(real_fields):
    for image in real_fields:
        h, w = image.shape[:2]
        double = cv2.resize(image, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
        assert image_scores(double)["focus"] == pytest.approx(
            image_scores(image)["focus"], rel=0.1)


# --- cell checks ----------------------------------------------------------------------------

def grid_boxes(n: int, size: float = 40, step: float = 50) -> Detections:
    """n boxes on a grid, none overlapping."""
    xy = np.array([((i % 12) * step, (i // 12) * step) for i in range(n)], np.float32)
    return Detections.from_arrays(np.hstack([xy, xy + size]), np.ones(n))


RBC_ID = 1  # grid_boxes are all class 1


def test_normal_field_of_cells_is_accepted():
    result = assess_cells(grid_boxes(20), (480, 640), CFG, RBC_ID)
    assert result.accepted, result.reasons
    # 20 cells of 40 px (the ruler: the boxes off the border) on 640 x 480
    assert result.scores == {"cells": 20.0, "density": 20 * 40**2 / (480 * 640), "overlap": 0.0}


@pytest.mark.parametrize("n", [0, 1, CFG.min_cells - 1])
def test_empty_field_is_rejected(n):
    result = assess_cells(grid_boxes(n), (480, 640), CFG, RBC_ID)
    assert not result.accepted
    assert has_reason(result, f"empty field (cells {n} < {CFG.min_cells})")


def test_overcrowded_field_is_rejected():
    boxes = grid_boxes(144, size=40, step=15)  # 12 x 12 cells piled on 210 x 210 px
    result = assess_cells(boxes, (210, 210), CFG, RBC_ID)
    assert has_reason(result, "overcrowded field (density ")


def test_density_is_the_same_through_any_objective():
    """The same smear through a half-power objective: half the pixels per cell, same
    density; 90 small cells in a wide field are a normal monolayer, not overcrowded."""
    det = grid_boxes(90, size=40, step=50)
    wide = Detections.from_arrays(det.xyxy / 2, det.class_id)
    full = cell_scores(det, (480 * 2, 640), RBC_ID)
    half = cell_scores(wide, (480, 320), RBC_ID)
    assert half["density"] == pytest.approx(full["density"])
    assert assess_cells(wide, (480, 320), CFG, RBC_ID).accepted
    assert cell_scores(det, (960, 640), 0)["density"] == 0.0  # no red cells: no ruler


def test_piled_up_cells_are_rejected_for_overlap():
    # 20 cells of 60 px, each moved 6 px from the last: a pile, as in a thick area
    xy = np.array([(100 + 6 * i, 100 + 6 * (i % 3)) for i in range(20)], np.float32)
    det = Detections.from_arrays(np.hstack([xy, xy + 60]), np.ones(20))
    result = assess_cells(det, (480, 640), CFG, RBC_ID)
    assert has_reason(result, "overlapping cells (overlap ")
    assert result.scores["overlap"] > 0.8


def test_box_overlap_is_the_doubly_covered_share():
    # 160 px wide image: one grid cell per pixel; two 10x10 boxes sharing a 5x10 strip
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    assert box_overlap(boxes, (100, 160)) == pytest.approx(50 / 150)
    assert box_overlap(boxes[:1], (100, 160)) == 0.0
    assert box_overlap(np.array([[-50, -50, 500, 500]] * 2, np.float32), (100, 160)) == 1.0


# --- duplicates -----------------------------------------------------------------------------

def recapture(image: np.ndarray, dx: int, dy: int, sigma: float, seed: int) -> np.ndarray:
    """The same field with the stage nudged by (dx, dy) px and new sensor noise."""
    moved = np.roll(image, (dy, dx), axis=(0, 1)).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(moved * 1.03 + noise, 0, 255).astype(np.uint8)


def shifted_fields(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A field (3/4 of the image) and the fields seen after moving 1/4 of it right or down."""
    h, w = image.shape[:2]
    fh, fw = 3 * h // 4, 3 * w // 4
    return (image[:fh, :fw], image[:fh, fw // 4:fw // 4 + fw], image[fh // 4:fh // 4 + fh, :fw])


def test_recaptured_field_is_a_duplicate_and_a_moved_one_is_not(field):
    guard = DuplicateGuard(CFG)
    base, right, down = shifted_fields(field)
    assert guard.check(fingerprint(base)) is None and len(guard) == 1
    reason = guard.check(fingerprint(recapture(base, 3, -2, 5.0, seed=1)))
    assert reason is not None and reason.startswith("duplicate of accepted field 1 ")
    assert guard.check(fingerprint(right)) is None
    assert guard.check(fingerprint(down)) is None
    assert len(guard) == 3


def test_real_recaptures_are_caught_and_moved_fields_are_not(real_fields):
    for i, image in enumerate(real_fields):
        base, right, down = shifted_fields(image)
        again = recapture(base, 4, 3, 4.0, seed=i)
        assert hamming(fingerprint(base), fingerprint(again)) <= CFG.duplicate_distance
        assert hamming(fingerprint(base), fingerprint(right)) > CFG.duplicate_distance
        assert hamming(fingerprint(base), fingerprint(down)) > CFG.duplicate_distance


def test_guard_can_look_without_remembering_and_be_disabled(field):
    guard = DuplicateGuard(CFG)
    assert guard.check(fingerprint(field), remember=False) is None and len(guard) == 0
    assert guard.check(fingerprint(field)) is None
    assert guard.check(fingerprint(field)) is not None and len(guard) == 1
    off = DuplicateGuard(QCConfig(enabled=False))
    assert off.check(fingerprint(field)) is None and off.check(fingerprint(field)) is None
    assert len(off) == 0


def test_fingerprint_ignores_exposure_and_has_255_bits(field):
    fp = fingerprint(field)
    assert fp.shape == (255,) and fp.dtype == bool
    assert hamming(fp, fingerprint(gain(field, 0.8))) <= 8


# --- configuration --------------------------------------------------------------------------

def test_config_rejects_unknown_keys_and_documents_every_field():
    with pytest.raises(ValidationError, match="min_fokus"):
        QCConfig.model_validate({"min_fokus": 2.0})
    with pytest.raises(ValidationError):
        QCConfig(max_highlights=1.5)
    assert all(f.description for f in QCConfig.model_fields.values())
