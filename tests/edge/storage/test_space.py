"""The space reserve and the full-disk checks (`edge.storage.space`); the real full disk is
in tests/e2e/test_disk_full.py."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from edge.core.errors import DiskFull, HemascopeError
from edge.storage import layout
from edge.storage.space import (
    MB,
    check_room_to_start,
    is_disk_full,
    keep_reserve,
    release_reserve,
    reserve_missing_mb,
    with_reserve,
)


def test_the_reserve_is_allocated_not_sparse_and_made_again_after_release(tmp_path):
    assert reserve_missing_mb(tmp_path, 2) == 2
    keep_reserve(tmp_path, 2)
    reserve = tmp_path / layout.RESERVE
    assert reserve.stat().st_blocks * 512 >= 2 * MB and reserve.stat().st_mode & 0o777 == 0o600
    assert reserve_missing_mb(tmp_path, 2) == 0
    keep_reserve(tmp_path, 2)  # kept as it is
    assert release_reserve(tmp_path) and not reserve.exists()
    assert not release_reserve(tmp_path)
    keep_reserve(tmp_path, 0)  # no reserve wanted: none made
    assert not reserve.exists()


def test_a_start_needs_the_reserve_and_as_much_again_free(tmp_path):
    check_room_to_start(tmp_path, 0, 1)
    assert (tmp_path / layout.RESERVE).exists()
    with pytest.raises(DiskFull, match=r"storage\.min_free_mb, storage\.reserve_mb"):
        check_room_to_start(tmp_path, 10**9, 1)


def test_with_reserve_releases_it_and_tries_once_more_only_on_a_full_disk(tmp_path):
    keep_reserve(tmp_path, 1)
    tries = []

    def needs_room() -> str:
        tries.append((tmp_path / layout.RESERVE).exists())
        if len(tries) == 1:
            raise DiskFull("full")
        return "closed"

    assert with_reserve(tmp_path, needs_room) == "closed" and tries == [True, False]
    with pytest.raises(DiskFull):  # no reserve left: the second full disk is raised
        with_reserve(tmp_path, lambda: (_ for _ in ()).throw(DiskFull("full")))
    keep_reserve(tmp_path, 1)
    with pytest.raises(HemascopeError, match="other"):  # any other error: no release
        with_reserve(tmp_path, lambda: (_ for _ in ()).throw(HemascopeError("other", "x")))
    assert (tmp_path / layout.RESERVE).exists()


def test_a_full_disk_is_told_from_other_errors():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(ValueError("full"))
