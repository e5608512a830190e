"""Atomic writes, file digests and timestamps."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import datetime

import pytest

from edge.core.files import (
    file_sha256,
    utc_now,
    write_atomic,
    write_bytes_atomic,
    write_files_atomic,
)


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    write_bytes_atomic(path, b"old")
    write_bytes_atomic(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]
    assert file_sha256(path) == hashlib.sha256(b"new bytes").hexdigest()


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"kept")

    def fail(fh) -> None:
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"kept" and os.listdir(tmp_path) == ["f.bin"]


def test_a_private_file_is_never_readable_by_others(tmp_path):
    path = tmp_path / "token"
    (tmp_path / ".token.tmp").write_bytes(b"left by a killed process")
    (tmp_path / ".token.tmp").chmod(0o644)
    write_bytes_atomic(path, b"secret", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_utc_now_is_iso_with_milliseconds_in_utc():
    now = utc_now()
    assert now.endswith("+00:00") and len(now.split("T")[1]) == len("12:00:00.000+00:00")
    assert datetime.fromisoformat(now).utcoffset().total_seconds() == 0


def test_several_files_are_written_all_or_none(tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "out" / "b.json"
    write_files_atomic({a: b"<html>", b: b"{}"})
    assert (a.read_bytes(), b.read_bytes()) == (b"<html>", b"{}")
    a.write_bytes(b"old")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(OSError):  # the second file's folder cannot be made
        write_files_atomic({a: b"new", blocker / "c.pdf": b"%PDF"})
    assert a.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "blocker", "out"]
