"""Capture sources: where fields of view come from. One small protocol, several kinds.

A source spec on the command line is `synthetic`, `folder:PATH`, `video:PATH`,
`camera:INDEX` (OpenCV / V4L2) or `picamera[:NUM]` (Raspberry Pi camera).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from edge.config import Profile
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


def is_live(spec: str) -> bool:
    """Cameras stream without end; files and the synthetic renderer have a fixed length."""
    return spec.partition(":")[0] in ("camera", "picamera")


def open_source(spec: str, profile: Profile) -> Source:
    """Open a source from its spec, or raise a HemascopeError that says how to write one."""
    scheme, _, arg = spec.partition(":")
    if scheme == "synthetic":
        from edge.capture.synthetic import SyntheticSource

        seed = int(arg) if arg else profile.source.synthetic_seed
        return SyntheticSource(count=profile.source.synthetic_fields, seed=seed)
    if scheme == "folder" and arg:
        from edge.capture.folder import FolderSource

        return FolderSource(Path(arg))
    if scheme == "video" and arg:
        from edge.capture.video import VideoSource

        return VideoSource(Path(arg))
    if scheme == "picamera" and (not arg or arg.isdigit()):
        from edge.capture.picamera import PiCameraSource

        return PiCameraSource(int(arg or 0), profile.camera, profile.picamera)
    if scheme == "camera" and arg.isdigit():
        from edge.capture.camera import CameraSource

        return CameraSource(int(arg), profile.camera)
    raise HemascopeError(
        f"unknown source {spec!r}",
        "use one of: synthetic, folder:PATH, video:PATH, camera:INDEX (e.g. camera:0), "
        "picamera[:NUM]",
    )
