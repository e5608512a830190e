"""Room on the data dir's disk: the free-space check, the reserve that lets a session end on
a full disk, and telling a full disk from other errors.

A full disk must not leave a session 'running', its fields never synced. Closing a session
(its status, its sync payload and its audit event, in one transaction) needs a little room,
so `hemascope run` keeps `storage.reserve_mb` of it allocated in a file of the data dir
(`space.reserve`) before a session starts. When closing a session (at the end of a run, or
in the recovery of a stopped one) finds the disk full, the reserve is deleted and the
transaction tried once more. The next run makes the reserve again, or refuses to start (one
line, no session created) while the disk has no room for it.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge.core.errors import DiskFull, HemascopeError
from edge.core.files import MB
from edge.storage import layout

_FULL = {errno.ENOSPC, errno.EDQUOT}
T = TypeVar("T")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means the disk (or the user's quota) is full."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _FULL
    if isinstance(exc, sqlite3.OperationalError):  # SQLITE_FULL: "database or disk is full"
        return getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)
    return False


def disk_full(data_dir: Path) -> DiskFull:
    return DiskFull(f"the disk of {data_dir} is full: no room left to store")


def check_free_space(data_dir: Path, min_free_mb: int) -> None:
    """DiskFull when the data dir's disk has less than `min_free_mb` free."""
    free_mb = shutil.disk_usage(data_dir).free / MB
    if free_mb < min_free_mb:
        raise DiskFull(f"only {free_mb:.0f} MB free in {data_dir} (storage.min_free_mb is "
                       f"{min_free_mb} MB)")


def check_room_to_start(data_dir: Path, min_free_mb: int, reserve_mb: float) -> None:
    """Make the reserve, then DiskFull unless the disk has `min_free_mb` free beside it, and
    at least as much again as the reserve (room for a session's first fields)."""
    keep_reserve(data_dir, reserve_mb)
    need = max(min_free_mb, reserve_mb)
    free_mb = shutil.disk_usage(data_dir).free / MB
    if free_mb < need:
        raise DiskFull(f"only {free_mb:.1f} MB free in {data_dir} beside the {reserve_mb:g} MB "
                       f"reserve; a session starts with {need:g} MB free (storage.min_free_mb, "
                       "storage.reserve_mb)")


def keep_reserve(data_dir: Path, reserve_mb: float) -> None:
    """Make sure `space.reserve` holds `reserve_mb` of allocated room (made or grown here);
    DiskFull when the disk has no room for it. A reserve partly allocated is kept."""
    size = int(reserve_mb * MB)
    if size == 0:
        return
    path = data_dir / layout.RESERVE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_blocks * 512 < size:
                _allocate(fd, size)
        finally:
            os.close(fd)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(f"the disk of {data_dir} is full: no room for the {reserve_mb:g} MB "
                           "kept to close a session on a full disk (storage.reserve_mb)"
                           ) from None
        raise HemascopeError(f"cannot write {path} ({exc.strerror})",
                             "fix the permissions of the data dir") from None


def _allocate(fd: int, size: int) -> None:
    """Allocate `size` bytes to the file: fallocate where the file system has it, else
    zeros written and synced (a sparse file would reserve nothing)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(fd, 0, os.SEEK_SET)
    zeros = bytes(MB)
    for start in range(0, size, MB):
        os.write(fd, zeros[:min(MB, size - start)])
    os.fsync(fd)


def reserve_missing_mb(data_dir: Path, reserve_mb: float) -> float:
    """How much of the reserve is not allocated yet (MB): all of it before the first run,
    and after a full disk used it."""
    path = data_dir / layout.RESERVE
    allocated = path.stat().st_blocks * 512 / MB if path.exists() else 0.0
    return max(0.0, reserve_mb - allocated)


def release_reserve(data_dir: Path) -> bool:
    """Delete the reserve; False when there was none."""
    try:
        (data_dir / layout.RESERVE).unlink()
    except FileNotFoundError:
        return False
    return True


def with_reserve(data_dir: Path, action: Callable[[], T]) -> T:
    """`action()` (all or nothing: one transaction); if it finds the disk full, the reserve
    is released and it is tried once more."""
    try:
        return action()
    except DiskFull:
        if not release_reserve(data_dir):
            raise
    return action()
