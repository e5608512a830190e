"""Capture sources: where fields of view come from. One small protocol, several kinds.

A source spec on the command line is `synthetic`, `folder:PATH`, `video:PATH`,
`camera:INDEX` (OpenCV / V4L2) or `picamera[:NUM]` (Raspberry Pi camera).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from edge.config import CameraConfig, PiCameraConfig, SourceConfig
from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable


class Source(Protocol):
    name: str  # the spec it was opened from, stored with the session

    def frames(self) -> Iterator[Frame | Unreadable]:
        """Fields in capture order; an unreadable one is reported, not raised."""
        ...


class LimitedSource:
    """The first `count` items of a live source (a camera streams until stopped)."""

    def __init__(self, inner: Source, count: int) -> None:
        self.inner = inner
        self.count = count
        self.name = inner.name

    def frames(self) -> Iterator[Frame | Unreadable]:
        yield from itertools.islice(self.inner.frames(), self.count)


def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, argument) of a source spec: "camera:0" -> ("camera", "0"), "synthetic" ->
    ("synthetic", ""); a spec of another form raises a HemascopeError saying how to write one."""
    scheme, _, arg = spec.partition(":")
    number = arg.isascii() and arg.isdigit() and len(arg) <= 9
    if ((scheme in ("synthetic", "picamera") and (not arg or number))
            or (scheme in ("folder", "video") and arg and "\0" not in arg)
            or (scheme == "camera" and number)):
        return scheme, arg
    raise HemascopeError(
        f"unknown source {spec[:200]!r}",
        "use one of: synthetic[:SEED], folder:PATH, video:PATH, camera:INDEX (e.g. camera:0), "
        "picamera[:NUM]",
    )


def is_live(spec: str) -> bool:
    """Cameras stream without end; files and the synthetic renderer have a fixed length."""
    return parse_spec(spec)[0] in ("camera", "picamera")


def open_source(spec: str, source: SourceConfig | None = None, camera: CameraConfig | None = None,
                picamera: PiCameraConfig | None = None) -> Source:
    """Open a source from its spec and its profile sections (defaults when not given), or
    raise a HemascopeError that says how to write a spec."""
    scheme, arg = parse_spec(spec)
    source = source or SourceConfig()
    camera = camera or CameraConfig()
    if scheme == "synthetic":
        from edge.capture.synthetic import SyntheticSource

        seed = int(arg) if arg else source.synthetic_seed
        return SyntheticSource(count=source.synthetic_fields, seed=seed)
    if scheme == "folder":
        from edge.capture.folder import FolderSource

        return FolderSource(Path(arg), source)
    if scheme == "video":
        from edge.capture.video import VideoSource

        return VideoSource(Path(arg))
    if scheme == "picamera":
        from edge.capture.picamera import PiCameraSource

        return PiCameraSource(int(arg or 0), camera, picamera or PiCameraConfig())
    from edge.capture.camera import CameraSource

    return CameraSource(int(arg), camera)
