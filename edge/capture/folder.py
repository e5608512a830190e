"""Fields from a folder of image files (sorted by name).

Every file is checked before it is decoded: a regular file (never a FIFO, device or
folder), within `source.max_image_mb`, and with a header whose size is within
`source.max_image_megapixels` and the shape of a field of view. A file that fails any check,
or does not decode, is reported as `Unreadable` with its reason and the folder goes on. An
image over `source.max_decoded_megapixels` is decoded at 1/2, 1/4 or 1/8 of its size on each
side (a 20-megapixel camera's field at 5 megapixels, still far above the detector's input),
which bounds a run's memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.capture.image_header import image_size
from edge.config import MAX_IMAGE_ASPECT, SourceConfig
from edge.core.errors import HemascopeError
from edge.core.files import MB, TooLarge, open_regular_file
from edge.core.frame import Frame, Unreadable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
HEAD_BYTES = 2 * MB  # read to find an image's size; a JPEG's SOF follows its EXIF and ICC
# Decoded 1/f smaller on each side: JPEG by libjpeg's scaled decoding (the full size is never
# in memory), other formats decoded whole and then reduced by OpenCV.
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image(path: Path, limits: SourceConfig | None = None) -> np.ndarray:
    """Decode an image file to BGR uint8, or raise ValueError saying why it cannot be used.
    Size and kind are checked from the file system and the header first (`limits`: the
    profile's `[source]`, defaults when not given), so no input can make decoding large.

    The file's bytes are not held whole while it decodes: only its header (the first
    HEAD_BYTES; all of it when the header lies further, as a TIFF's may) is read here, and
    the decoder reads the open file itself (`/proc/self/fd`; the bytes where there is none)."""
    limits = limits or SourceConfig()
    fd, size = _open_regular_file(path, limits.max_image_mb)
    try:
        if size == 0:
            raise ValueError("empty file")
        data = os.pread(fd, HEAD_BYTES, 0)
        try:
            kind, width, height = image_size(data)
        except ValueError:
            if size <= HEAD_BYTES:
                raise
            data = _read_whole(fd, size)
            kind, width, height = image_size(data)
        _check_shape(width, height, limits.max_image_megapixels)
        if kind == "jpeg" and b"\xff\xd9" not in os.pread(fd, 4096, max(0, size - 4096)):
            # libjpeg decodes a truncated JPEG with a grey lower part: counting it is wrong
            raise ValueError("truncated JPEG (no end-of-image marker)")
        factor = reduction(width, height, limits.max_decoded_megapixels)
        image = _decode(fd, size, data, _REDUCED[factor])
    finally:
        os.close(fd)
    if image is None:
        raise ValueError("not a decodable image")
    if kind == "jpeg" and _ends_in_decoder_fill(image, factor):
        raise ValueError("truncated JPEG (its image data ends early; the decoder filled the "
                         "rest with grey)")
    return image


def _decode(fd: int, size: int, data: bytes, flags: int) -> np.ndarray | None:
    """The open file decoded: by OpenCV from the descriptor's path, or from its bytes."""
    if Path(f"/proc/self/fd/{fd}").exists():
        return cv2.imread(f"/proc/self/fd/{fd}", flags)
    if len(data) < size:
        data = _read_whole(fd, size)
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _read_whole(fd: int, size: int) -> bytes:
    data = os.pread(fd, size + 1, 0)
    if len(data) > size:
        raise ValueError("file grew while being read")
    return data


def _open_regular_file(path: Path, max_mb: float) -> tuple[int, int]:
    """`open_regular_file` with the limit in MB, and a size refusal that names its setting."""
    try:
        return open_regular_file(path, int(max_mb * MB))
    except TooLarge as exc:
        raise ValueError(f"{exc} (raise source.max_image_mb if it is a real field)") from None


def _check_shape(width: int, height: int, max_megapixels: float) -> None:
    """Refuse sizes no field of view has, from the header alone. Quality control scales a
    field to QC_WORK_SIDE px on its short side, so the aspect limit bounds that too."""
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ValueError(f"{width}x{height} is {megapixels:.1f} megapixels, over the "
                         f"{max_megapixels:g} megapixel limit (raise "
                         "source.max_image_megapixels if it is a real field)")
    if max(width, height) > MAX_IMAGE_ASPECT * min(width, height):
        raise ValueError(f"{width}x{height} is not a field of view (one side over "
                         f"{MAX_IMAGE_ASPECT}x the other)")


def reduction(width: int, height: int, max_megapixels: float) -> int:
    """The factor (1, 2, 4 or 8) an image is decoded smaller by on each side: the least that
    brings it within `max_megapixels` (8 when none does)."""
    return next((f for f in (1, 2, 4) if width * height / f**2 <= max_megapixels * 1e6), 8)


def _ends_in_decoder_fill(image: np.ndarray, factor: int = 1) -> bool:
    """True when the last block of a decoded JPEG is libjpeg's fill for missing data.

    When a scan's entropy-coded data ends early (a truncated file, even with an end marker
    appended), libjpeg only warns ("Premature end of JPEG file") and leaves every block it
    could not decode with zero coefficients: exactly 128 in every channel. Blocks are decoded
    in order, so any loss reaches the bottom-right block; a camera's field, with its sensor
    noise, never has an 8x8 corner of exactly neutral 128. An image whose first block is that
    grey too is not called truncated: it is blank there (a flat test card), and quality
    control judges it.
    """
    block = max(1, 8 // factor)  # a JPEG decoded 1/factor smaller has blocks 8/factor wide
    return bool((image[-block:, -block:] == 128).all()
                and not (image[:block, :block] == 128).all())


class FolderSource:
    def __init__(self, folder: Path, limits: SourceConfig | None = None) -> None:
        if not folder.is_dir():
            raise HemascopeError(f"image folder not found: {folder}",
                                 "give an existing folder, e.g. --source folder:/media/usb/slide1")
        self.folder = folder
        self.limits = limits or SourceConfig()
        self.name = f"folder:{folder}"
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise HemascopeError(f"no images in {folder}",
                                 f"put {', '.join(sorted(IMAGE_SUFFIXES))} files there")

    def frames(self) -> Iterator[Frame | Unreadable]:
        for index, path in enumerate(self.paths):
            try:
                image = read_image(path, self.limits)
                captured_at = os.path.getmtime(path) or time.time()
            except (OSError, ValueError, cv2.error) as exc:
                yield Unreadable(index, str(path), f"unreadable image: {exc}")
                continue
            yield Frame(image, index, str(path), captured_at)
