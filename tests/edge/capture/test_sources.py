from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.sources import open_source
from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable


def _jpeg(path: Path, value: int = 128) -> bytes:
    image = np.full((48, 64, 3), value, np.uint8)
    cv2.circle(image, (32, 24), 10, (40, 40, 200), -1)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    path.write_bytes(data)
    return data


def test_folder_reports_bad_images_and_keeps_going(tmp_path):
    good = _jpeg(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (tmp_path / "c.png").write_bytes(b"not an image at all")  # corrupt
    (tmp_path / "d.jpg").write_bytes(b"")  # empty
    _jpeg(tmp_path / "e.jpg", 90)
    (tmp_path / "notes.txt").write_text("ignored")
    items = list(open_source(f"folder:{tmp_path}").frames())
    assert [type(i) for i in items] == [Frame, Unreadable, Unreadable, Unreadable, Frame]
    reasons = [i.reason for i in items if isinstance(i, Unreadable)]
    assert "truncated" in reasons[0] and "not a PNG, JPEG" in reasons[1] and "empty" in reasons[2]
    assert items[0].image.shape == (48, 64, 3)


def test_video_source_yields_every_frame(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for v in range(7):
        writer.write(np.full((48, 64, 3), v * 30, np.uint8))
    writer.release()
    frames = list(open_source(f"video:{path}").frames())
    assert len(frames) == 7 and all(isinstance(f, Frame) for f in frames)
    assert frames[3].image.mean() == pytest.approx(90, abs=3)


@pytest.mark.parametrize("spec", ["webcam", "folder:", "camera:x", "usb:0"])
def test_unknown_source_spec(spec):
    with pytest.raises(HemascopeError, match="unknown source"):
        open_source(spec)


def test_missing_folder_and_camera(tmp_path):
    with pytest.raises(HemascopeError, match="image folder not found"):
        open_source(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(HemascopeError, match="no images"):
        open_source(f"folder:{tmp_path}")
    camera = open_source("camera:57")
    with pytest.raises(HemascopeError, match="camera 57 not found"):
        next(iter(camera.frames()))
