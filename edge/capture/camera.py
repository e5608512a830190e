"""Fields from a USB / V4L2 camera through OpenCV, reconnecting when the camera drops out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

import cv2
import numpy as np

from edge.config import CameraConfig
from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable


class Capture(Protocol):
    """The part of cv2.VideoCapture this source uses."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


def open_opencv(index: int) -> Capture:
    """cv2.VideoCapture without OpenCV's multi-line warnings (we report in one line)."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(previous)


class CameraSource:
    """`camera:INDEX`. If the camera stops delivering frames (unplugged, USB reset), it is
    reopened with exponential backoff; the session goes on with the next field index."""

    def __init__(self, index: int, config: CameraConfig,
                 opener: Callable[[int], Capture] = open_opencv,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.index = index
        self.config = config
        self.opener = opener
        self.sleep = sleep
        self.name = f"camera:{index}"
        self.reconnects = 0

    def _open(self) -> Capture | None:
        cap = self.opener(self.index)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        for _ in range(self.config.warmup_frames):
            cap.read()
        return cap

    def _reopen(self) -> Capture:
        delay = self.config.reconnect_backoff_s
        for _ in range(self.config.reconnect_attempts):
            self.sleep(delay)
            cap = self._open()
            if cap is not None:
                self.reconnects += 1
                return cap
            delay = min(delay * 2, 30.0)
        raise HemascopeError(
            f"camera {self.index} lost and not back after {self.config.reconnect_attempts} "
            "attempts",
            "reconnect the camera and start a new session; fields stored so far are kept",
        )

    def frames(self) -> Iterator[Frame | Unreadable]:
        cap = self._open()
        if cap is None:
            raise HemascopeError(f"camera {self.index} not found",
                                 "connect the microscope camera, check `ls /dev/video*`, or use "
                                 "--source synthetic")
        index = 0
        try:
            while True:  # a live stream: the runner decides how many fields to take
                ok, image = cap.read()
                if not ok or image is None:
                    cap.release()
                    cap = self._reopen()
                    continue
                yield Frame(image, index, f"camera:{self.index}#{index}", time.time())
                index += 1
        finally:
            cap.release()
