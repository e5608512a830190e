"""Settle detection on real video files: one field per stop of a hand-moved stage."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.capture.moving_slide import REST_PX, film, glide, smear_canvas, write_moving_slide
from edge.capture.settle import SettleConfig, SettleDetector, SettledSource
from edge.capture.synthetic import render_field
from edge.capture.video import VideoSource
from edge.core.frame import Frame, Unreadable

STILL = SettleConfig().still_frames


def _taken(path: Path, config: SettleConfig | None = None) -> list[int]:
    """Video frame numbers of the fields a SettledSource takes from a video file."""
    items = list(SettledSource(VideoSource(path), config).frames())
    assert [item.index for item in items] == list(range(len(items)))
    assert all(item.origin.startswith(f"{path}#") for item in items)
    return [int(item.origin.rpartition("#")[2]) for item in items]


def _rest(position: tuple[float, float] | np.ndarray, frames: int) -> np.ndarray:
    """The stage at rest at `position` for `frames` frames."""
    return np.repeat(np.asarray([position], np.float64), frames, 0)


def _film(path: Path, parts: list[np.ndarray], noise: float = 2.0, flicker: float = 0.0
          ) -> Path:
    rng = np.random.default_rng(7)
    film(path, smear_canvas(rng, 2, 1), np.concatenate(parts), 15, rng, noise, flicker)
    return path


class _ListSource:
    name = "list"

    def __init__(self, items: list[Frame | Unreadable]) -> None:
        self.items = items

    def frames(self) -> Iterator[Frame | Unreadable]:
        yield from self.items


@pytest.mark.parametrize(("fps", "stops", "seed"), [(15, 24, 3), (30, 8, 5)])
def test_one_field_per_stop_of_a_hand_scan(tmp_path, fps, stops, seed):
    path = tmp_path / "scan.avi"
    ranges = write_moving_slide(path, stops, seed, fps, noise=2.5, flicker=0.02)
    taken = _taken(path)
    per_stop = [[t for t in taken if first <= t <= last] for first, last in ranges]
    assert [len(t) for t in per_stop] == [1] * stops  # no miss, no second field at a stop
    assert len(taken) == stops  # so none was taken while the stage moved
    assert SettledSource(VideoSource(path)).name == f"settle(video:{path})"


def test_noise_and_flicker_while_still_take_one_field(tmp_path):
    path = _film(tmp_path / "still.avi", [_rest((300, 0), 150)], noise=5.0, flicker=0.05)
    assert _taken(path) == [STILL - 1]


@pytest.mark.parametrize("pan", [
    glide(np.array([0.0, 0]), np.array([320.0, 40]), 120),  # half a field in 8 s, min-jerk
    np.stack([np.arange(1, 161) * 0.5, np.zeros(160)], 1),  # creeping at 0.5 px per frame
])
def test_slow_pan_takes_no_field_mid_pan(tmp_path, pan):
    start, end = np.zeros(2), np.round(pan[-1])
    stage = np.concatenate([_rest(start, 20), pan, _rest(end, 20)])
    # min_shift all but off: motion detection alone must see the pan.
    taken = _taken(_film(tmp_path / "pan.avi", [stage]), SettleConfig(min_shift=0.01))
    assert len(taken) == 2 and taken[0] < 20
    assert np.hypot(*(stage[taken[1] - 1] - end)) < REST_PX  # at rest (as in scan_path)


def test_knock_that_settles_back_takes_no_second_field(tmp_path):
    here, away = np.array([200.0, 0]), np.array([230.0, 12])
    knock = [glide(here, away, 3), glide(away, here, 3)]
    path = _film(tmp_path / "knock.avi", [_rest(here, 20), *knock, _rest(here, 30)])
    assert _taken(path) == [STILL - 1]


def test_stream_that_never_moves_yields_one_field():
    image, _ = render_field(np.random.default_rng(1))
    frames = [Frame(image, i, f"cam#{i}", float(i)) for i in range(300)]
    taken = list(SettledSource(_ListSource(frames)).frames())
    assert [(f.index, f.origin, f.captured_at) for f in taken] == [(0, f"cam#{STILL - 1}",
                                                                      STILL - 1.0)]
    detector = SettleDetector()
    assert [detector.update(image) for _ in range(50)].count(True) == 1


def test_unreadable_items_pass_through_in_sequence():
    image, _ = render_field(np.random.default_rng(2))
    still = [Frame(image, i, f"cam#{i}", 0.0) for i in range(12)]
    bad = Unreadable(12, "cam#12", "decode error")
    items = list(SettledSource(_ListSource([*still, bad, *still])).frames())
    assert [(type(i), i.index, i.origin) for i in items] == [
        (Frame, 0, f"cam#{STILL - 1}"), (Unreadable, 1, "cam#12")]
    assert items[1].reason == "decode error"


def test_settle_config_is_strict_and_documented():
    with pytest.raises(ValidationError, match="motion_treshold"):
        SettleConfig.model_validate({"motion_treshold": 1.0})
    with pytest.raises(ValidationError):
        SettleConfig(still_frames=0)
    assert all(field.description for field in SettleConfig.model_fields.values())
