"""Bounded input from a folder (issue #20, findings 4, 5 and 9): every file is checked from
the file system and its header before decoding, and a bad file is skipped with its reason."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.folder import FolderSource, read_image, reduction
from edge.capture.image_header import image_size
from edge.capture.sources import open_source
from edge.config import SourceConfig
from edge.core.frame import Frame, Unreadable
from tests.helpers.images import png


def _field(path: Path, value: int) -> None:
    image = np.random.default_rng(value).integers(0, 255, (120, 160, 3), np.uint8)
    cv2.imwrite(str(path), image)


def _reasons(folder: Path, limits: SourceConfig | None = None) -> dict[str, str | None]:
    """Each file's reason for being skipped (None: read as a field)."""
    return {Path(item.origin).name: item.reason if isinstance(item, Unreadable) else None
            for item in FolderSource(folder, limits).frames()}


@pytest.mark.parametrize("suffix, params", [(".png", []), (".jpg", []), (".bmp", []),
                                            (".tif", []), (".webp", []),
                                            (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])])
def test_the_header_gives_the_size_the_decoder_gives(suffix, params):
    image = np.random.default_rng(1).integers(0, 255, (65, 97, 3), np.uint8)
    data = cv2.imencode(suffix, image, params)[1].tobytes()
    assert image_size(data)[1:] == (97, 65)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (65, 97)


def test_thin_and_huge_images_are_skipped_from_their_header(tmp_path):
    """Finding 4: a 100-byte 1x5000 PNG took 2.4 GB (quality control scales it to 240 px on
    its short side), 1x20000 4.5 GB, an 875 KB 30000x30000 PNG 5.3 GB."""
    (tmp_path / "a_1x5000.png").write_bytes(thin := png(1, 5000))
    (tmp_path / "b_1x20000.png").write_bytes(png(1, 20000))
    (tmp_path / "c_30000.png").write_bytes(png(30000, 30000, b""))  # the header alone
    _field(tmp_path / "d_field.png", 1)
    assert len(thin) < 120 and cv2.imdecode(np.frombuffer(thin, np.uint8), 0).shape == (5000, 1)
    reasons = _reasons(tmp_path)
    assert "1x5000 is not a field of view" in reasons["a_1x5000.png"]
    assert "1x20000 is not a field of view" in reasons["b_1x20000.png"]
    assert "900.0 megapixels, over the 25 megapixel limit" in reasons["c_30000.png"]
    assert reasons["d_field.png"] is None


def test_the_limits_come_from_the_profile(tmp_path):
    _field(tmp_path / "a.png", 1)  # 160x120: 0.0192 megapixels, about 58 KB
    items = list(open_source(f"folder:{tmp_path}",
                             SourceConfig(max_image_megapixels=0.019)).frames())
    assert "over the 0.019 megapixel limit" in items[0].reason
    items = list(open_source(f"folder:{tmp_path}", SourceConfig(max_image_mb=0.01)).frames())
    assert "MB, over the limit of 0.01 MB (raise source.max_image_mb" in items[0].reason
    assert isinstance(next(open_source(f"folder:{tmp_path}").frames()), Frame)


def test_special_files_are_refused_without_reading_them(tmp_path):
    """Finding 4: a .jpg linked to /dev/zero took 6.7 GB; a FIFO named .jpg hung the run."""
    (tmp_path / "a_zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "b_fifo.jpg")
    (tmp_path / "c_folder.jpg").mkdir()
    _field(tmp_path / "d_field.jpg", 2)
    reasons: dict[str, str | None] = {}
    reader = threading.Thread(target=lambda: reasons.update(_reasons(tmp_path)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # blocked opening the FIFO: give it a writer so it ends
        os.close(os.open(tmp_path / "b_fifo.jpg", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
        pytest.fail("reading the folder blocked on a FIFO")
    assert reasons == {"a_zero.jpg": "unreadable image: not a regular file but a device",
                       "b_fifo.jpg": "unreadable image: not a regular file but a FIFO",
                       "c_folder.jpg": "unreadable image: not a regular file but a folder",
                       "d_field.jpg": None}


def test_a_truncated_jpeg_with_an_end_marker_appended_is_unreadable(tmp_path, datasets):
    """Finding 9: libjpeg decodes it with a warning only, its lower part grey."""
    real = sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    data = real.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:int(len(data) * 0.6)] + b"\xff\xd9")
    (tmp_path / "whole.jpg").write_bytes(data)
    reasons = _reasons(tmp_path)
    assert "truncated JPEG (its image data ends early" in reasons["cut.jpg"]
    assert reasons["whole.jpg"] is None
    assert read_image(real).shape == (480, 640, 3)


def test_large_images_are_decoded_smaller_by_the_least_factor():
    assert reduction(640, 480, 8) == 1
    assert reduction(4000, 2000, 8) == 1  # exactly 8 megapixels
    assert reduction(6000, 4000, 8) == 2  # 24 MP -> 6 MP
    assert reduction(5000, 5000, 6) == 4  # 6.25 MP at 1/2 is still over 6
    assert reduction(40000, 40000, 1) == 8  # nothing brings it within: the least memory


def test_a_truncated_jpeg_is_refused_when_decoded_smaller(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2400, 3200, 3), np.uint8)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(data)
    cut.write_bytes(data[:int(len(data) * 0.97)] + b"\xff\xd9")
    limits = SourceConfig(max_decoded_megapixels=2)  # 7.7 MP -> 1/2 -> 1.9 MP
    assert read_image(whole, limits).shape == (1200, 1600, 3)
    with pytest.raises(ValueError, match="truncated JPEG"):
        read_image(cut, limits)
