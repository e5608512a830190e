"""Fields from a USB / V4L2 camera through OpenCV."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2

from edge.config import CameraConfig
from edge.errors import HemascopeError
from edge.frame import Frame, Unreadable


class CameraSource:
    def __init__(self, index: int, config: CameraConfig) -> None:
        self.index = index
        self.config = config
        self.name = f"camera:{index}"

    def _open(self) -> cv2.VideoCapture:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we say it in one line
        try:
            cap = cv2.VideoCapture(self.index)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not cap.isOpened():
            raise HemascopeError(f"camera {self.index} not found",
                                 "connect the microscope camera, check `ls /dev/video*`, or use "
                                 "--source synthetic")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        for _ in range(self.config.warmup_frames):
            cap.read()
        return cap

    def frames(self) -> Iterator[Frame | Unreadable]:
        cap = self._open()
        try:
            for index in range(self.config.max_fields):
                ok, image = cap.read()
                if not ok:
                    raise HemascopeError(f"camera {self.index} stopped delivering frames",
                                         "check the cable; fields stored so far are kept")
                yield Frame(image, index, f"camera:{self.index}#{index}", time.time())
        finally:
            cap.release()
