"""Fields from a recorded video file, one per frame."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable


class VideoSource:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise HemascopeError(f"video not found: {path}", "give an existing video file")
        self.path = path
        self.name = f"video:{path}"

    def frames(self) -> Iterator[Frame | Unreadable]:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise HemascopeError(f"cannot decode video {self.path}",
                                 "convert it to MP4 (H.264) or AVI (MJPEG)")
        try:
            index = 0
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                yield Frame(image, index, f"{self.path}#{index}", time.time())
                index += 1
        finally:
            cap.release()
