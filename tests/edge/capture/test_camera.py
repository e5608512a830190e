"""Camera unplug / replug: the session is kept and no stored field is lost.

No camera exists on the test machine, so a capture object that behaves like
cv2.VideoCapture (synthetic frames; it can be "unplugged") stands in for the device.
"""

import numpy as np
import pytest

from edge.capture.camera import CameraSource
from edge.capture.sources import LimitedSource
from edge.capture.synthetic import render_field
from edge.config import CameraConfig, Profile
from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus
from edge.inference.detector import Detector
from edge.pipeline.runner import Runner
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL


class Bench:
    """A camera on a USB port: delivers frames until unplugged, then is absent for a while."""

    def __init__(self, fail_after: int, absent_opens: int) -> None:
        self.delivered = 0
        self.fail_after = fail_after
        self.absent_opens = absent_opens  # opens that fail after the unplug
        self.unplugged = False
        self.opens = 0

    def open(self, index: int) -> "FakeCapture":
        self.opens += 1
        if self.unplugged and self.absent_opens > 0:
            self.absent_opens -= 1
            return FakeCapture(self, opened=False)
        self.unplugged = False
        return FakeCapture(self, opened=True)


class FakeCapture:
    def __init__(self, bench: Bench, opened: bool) -> None:
        self.bench = bench
        self.opened = opened

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        return True

    def read(self):
        bench = self.bench
        if not self.opened or bench.unplugged:
            return False, None
        if bench.delivered == bench.fail_after:
            bench.unplugged = True
            bench.fail_after = -1
            return False, None
        bench.delivered += 1
        image, _ = render_field(np.random.default_rng(bench.delivered))
        return True, image

    def release(self) -> None:
        self.opened = False


def _camera(bench: Bench, attempts: int, waits: list[float]) -> LimitedSource:
    config = CameraConfig(warmup_frames=0, reconnect_attempts=attempts, reconnect_backoff_s=0.5)
    return LimitedSource(CameraSource(0, config, opener=bench.open, sleep=waits.append), 8)


def test_unplug_and_replug_keeps_the_session_and_every_field(tmp_path):
    bench = Bench(fail_after=3, absent_opens=2)
    waits: list[float] = []
    camera = _camera(bench, attempts=5, waits=waits)
    store = Store.open(tmp_path)
    sid = Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(camera, "S-cam")
    session = store.sessions()[0]
    assert (session.status, session.fields_by_status[FieldStatus.COUNTED]) == ("finished", 8)
    assert sorted(store.field_counts(sid)) == list(range(8))
    assert camera.inner.reconnects == 1 and waits == [0.5, 1.0, 2.0]  # exponential backoff


def test_camera_gone_for_good_stops_with_fields_kept(tmp_path):
    bench = Bench(fail_after=3, absent_opens=100)
    camera = _camera(bench, attempts=3, waits=[])
    store = Store.open(tmp_path)
    with pytest.raises(HemascopeError, match="not back after 3 attempts"):
        Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(camera, "S-cam")
    session = store.sessions()[0]
    assert (session.status, session.fields_by_status[FieldStatus.COUNTED]) == ("interrupted", 3)
