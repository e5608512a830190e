"""The picamera2 source through the same source protocol as the others.

libcamera exists only on Raspberry Pi OS, so a module providing the picamera2 calls this
source uses (with synthetic smear fields as pixels) stands in for it.
"""

import sys
import types
from typing import ClassVar

import numpy as np
import pytest

from edge.capture.sources import LimitedSource, open_source
from edge.capture.synthetic import render_field
from edge.config import CameraConfig, PiCameraConfig, Profile
from edge.core.errors import HemascopeError
from edge.core.frame import Frame


class FakePicamera2:
    instances: ClassVar[list["FakePicamera2"]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num > 0:
            raise IndexError("list index out of range")
        self.calls: list[tuple] = []
        self.size = (0, 0)
        FakePicamera2.instances.append(self)

    def create_still_configuration(self, main: dict) -> dict:
        return {"main": main}

    def configure(self, config: dict) -> None:
        self.size = config["main"]["size"]
        self.calls.append(("configure", config["main"]["format"]))

    def set_controls(self, controls: dict) -> None:
        self.calls.append(("set_controls", controls))

    def start(self) -> None:
        self.calls.append(("start",))

    def capture_array(self, stream: str) -> np.ndarray:
        w, h = self.size
        self.calls.append(("capture", stream))
        return render_field(np.random.default_rng(len(self.calls)), w, h)[0]

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.fixture
def picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances.clear()
    return FakePicamera2


def test_fixed_exposure_gain_white_balance_and_lens(picamera2):
    profile = Profile(camera=CameraConfig(width=320, height=240, max_fields=3, warmup_frames=2),
                      picamera=PiCameraConfig(exposure_us=8000, analogue_gain=1.5,
                                              colour_gains=(1.8, 1.4), lens_position=0.0))
    frames = list(LimitedSource(open_source("picamera", camera=profile.camera,
                                         picamera=profile.picamera), 3).frames())
    assert [type(f) for f in frames] == [Frame] * 3
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.flags["C_CONTIGUOUS"]
    cam = picamera2.instances[0]
    controls = next(c[1] for c in cam.calls if c[0] == "set_controls")
    assert controls == {"AeEnable": False, "ExposureTime": 8000, "AnalogueGain": 1.5,
                        "AwbEnable": False, "ColourGains": (1.8, 1.4), "AfMode": 0,
                        "LensPosition": 0.0}
    assert ("configure", "RGB888") in cam.calls
    assert sum(c[0] == "capture" for c in cam.calls) == 5  # 2 warm-up + 3 fields
    assert cam.calls[-2:] == [("stop",), ("close",)]


def test_automatic_settings_leave_controls_empty(picamera2):
    profile = Profile(camera=CameraConfig(max_fields=1, warmup_frames=0))
    list(LimitedSource(open_source("picamera:0", camera=profile.camera,
                                    picamera=profile.picamera), 1).frames())
    assert ("set_controls", {}) in picamera2.instances[0].calls


def test_missing_camera_and_missing_library(picamera2, monkeypatch):
    with pytest.raises(HemascopeError, match="Pi camera 1 not found"):
        next(iter(open_source("picamera:1").frames()))
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a PC
    with pytest.raises(HemascopeError, match="apt install python3-picamera2"):
        next(iter(open_source("picamera").frames()))
