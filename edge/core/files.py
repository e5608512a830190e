"""Small file and time helpers: atomic writes, private files and folders, file digests, UTC
timestamps (stdlib only)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

MB = 2**20

def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds (how every stored time reads)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class TooLarge(ValueError):
    """A file over its byte limit."""


def open_regular_file(path: Path, max_bytes: int) -> tuple[int, int]:
    """(descriptor, size) of a regular file of at most `max_bytes` (links followed). Anything
    else raises ValueError saying what it is (a folder, a FIFO, a device; TooLarge); a file
    that cannot be opened raises OSError. Checked before opening (a device is never opened),
    and again on the descriptor, opened non-blocking (a FIFO swapped in meanwhile never
    blocks)."""
    _check_regular(os.stat(path), max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        _check_regular(info, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `open_regular_file`)."""
    fd, _ = open_regular_file(path, max_bytes)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"grew over the limit of {max_bytes} bytes while being read")
    return data


def _check_regular(info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"not a regular file but {file_kind(info.st_mode)}")
    if info.st_size > max_bytes:
        raise TooLarge(f"{info.st_size / MB:.1f} MB, over the limit of "
                         f"{max_bytes / MB:.3g} MB")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ('a folder', 'a FIFO', ...)."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def private_file(path: Path) -> None:
    """Create `path` if it is missing, and leave it readable and writable by its owner only
    (0600), whatever the umask. An existing file is never opened here: closing a descriptor
    of a database would drop the locks SQLite holds on it in this process."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents as folders only their owner can open (0700),
    whatever the umask; folders that exist already are left as they are."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, 0o700)


def write_atomic(path: Path, fill: Callable[[BinaryIO], object], mode: int = 0o666) -> None:
    """Write a file so that a crash never leaves a half-written file under its name.

    `fill` writes a new temporary file beside `path` (created with `mode`, less the umask),
    which is synced to disk and renamed over `path`; on any error it is removed (a full disk
    leaves nothing behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # left by a killed process: O_EXCL then applies `mode`
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o666) -> None:
    """`write_atomic` of a bytes value."""
    write_atomic(path, lambda fh: fh.write(data), mode)


def write_files_atomic(files: dict[Path, bytes]) -> None:
    """Write several files all or none: every one goes to a synced temporary file beside its
    path first, and only when all are written are they renamed into place. On any error the
    temporaries are removed and no file under its name was touched."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.unlink(missing_ok=True)
            staged.append((tmp, path))
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
