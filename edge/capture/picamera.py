"""Fields from a Raspberry Pi camera through picamera2 (Raspberry Pi OS only).

Microscope imaging wants a fixed exposure, gain and white balance, so that every field of a
session is captured alike (auto exposure would brighten a sparse field and darken a dense
one). Focus is the microscope's stage, so the lens, if it has autofocus, is held still.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.config import CameraConfig, PiCameraConfig
from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable


def picamera_controls(config: PiCameraConfig) -> dict[str, Any]:
    """libcamera controls for the profile: manual exposure, gain, white balance and lens."""
    controls: dict[str, Any] = {}
    if config.exposure_us is not None:
        controls.update(AeEnable=False, ExposureTime=config.exposure_us)
    if config.analogue_gain is not None:
        controls["AnalogueGain"] = config.analogue_gain
    if config.colour_gains is not None:
        controls.update(AwbEnable=False, ColourGains=tuple(config.colour_gains))
    if config.lens_position is not None:
        controls.update(AfMode=0, LensPosition=config.lens_position)  # 0 = manual focus
    return controls


class PiCameraSource:
    def __init__(self, camera_num: int, camera: CameraConfig, config: PiCameraConfig) -> None:
        self.camera_num = camera_num
        self.camera = camera
        self.config = config
        self.name = f"picamera:{camera_num}"

    def frames(self) -> Iterator[Frame | Unreadable]:
        try:
            from picamera2 import Picamera2  # Raspberry Pi OS: apt install python3-picamera2
        except ImportError:
            raise HemascopeError(
                "picamera2 is not installed (it exists only on Raspberry Pi OS)",
                "on the Pi: sudo apt install python3-picamera2, and create the venv with "
                "--system-site-packages; elsewhere use camera:INDEX",
            ) from None
        try:
            cam = Picamera2(self.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise HemascopeError(f"Pi camera {self.camera_num} not found ({exc})",
                                 "check the ribbon cable and `rpicam-hello --list-cameras`"
                                 ) from None
        try:
            # "RGB888" gives pixels in B, G, R byte order: OpenCV's order, no conversion needed.
            cam.configure(cam.create_still_configuration(
                main={"size": (self.camera.width, self.camera.height), "format": "RGB888"}))
            cam.set_controls(picamera_controls(self.config))
            cam.start()
            for _ in range(self.camera.warmup_frames):
                cam.capture_array("main")
            for index in itertools.count():  # a live stream: the runner decides when to stop
                image = np.ascontiguousarray(cam.capture_array("main")[..., :3])
                yield Frame(image, index, f"picamera:{self.camera_num}#{index}", time.time())
        finally:
            cam.stop()
            cam.close()
