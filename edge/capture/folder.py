"""Fields from a folder of image files (sorted by name)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to BGR uint8, or raise ValueError saying why it cannot be used."""
    data = path.read_bytes()
    if not data:
        raise ValueError("empty file")
    if path.suffix.lower() in {".jpg", ".jpeg"} and b"\xff\xd9" not in data[-4096:]:
        # libjpeg decodes a truncated JPEG with a grey lower part; counting it would be wrong.
        raise ValueError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image


class FolderSource:
    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise HemascopeError(f"image folder not found: {folder}",
                                 "give an existing folder, e.g. --source folder:/media/usb/slide1")
        self.folder = folder
        self.name = f"folder:{folder}"
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise HemascopeError(f"no images in {folder}",
                                 f"put {', '.join(sorted(IMAGE_SUFFIXES))} files there")

    def frames(self) -> Iterator[Frame | Unreadable]:
        for index, path in enumerate(self.paths):
            try:
                image = read_image(path)
            except (OSError, ValueError) as exc:
                yield Unreadable(index, str(path), f"unreadable image: {exc}")
                continue
            yield Frame(image, index, str(path), os.path.getmtime(path) or time.time())
