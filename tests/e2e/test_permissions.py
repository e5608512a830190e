"""Issue #20, finding 11 (permissions): the device's data and the hub's SQLite file are made
readable by their owner only, whatever the umask of the process that makes them."""

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.storage import layout
from edge.storage.store import Store
from tests.conftest import run_cli
from tests.helpers.images import png
from tests.helpers.sync import hub_cli


def _modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Permission bits of the folders ('.' for root) and of the files under root, by path
    relative to root."""
    folders, files = {".": stat.S_IMODE(root.stat().st_mode)}, {}
    for path in root.rglob("*"):
        (files if path.is_file() else folders)[str(path.relative_to(root))] = \
            stat.S_IMODE(path.stat().st_mode)
    return folders, files


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request):
    old = os.umask(request.param)  # the commands below inherit it
    yield request.param
    os.umask(old)


def test_a_run_makes_its_folders_0700_and_its_files_0600(tmp_path, umask):
    slide = tmp_path / "slide"
    slide.mkdir()
    for i in range(2):
        (slide / f"f{i}.png").write_bytes(png(320, 240))
    data = tmp_path / "new" / "data"  # its parent is missing too
    done = run_cli("run", "-s", f"folder:{slide}", "--data-dir", str(data), "--sample", "S-1")
    assert done.returncode == 0, done.stderr
    store = Store.open(data)  # with its -wal and -shm files, as while a run goes on
    try:
        folders, files = _modes(tmp_path / "new")
    finally:
        store.close()
    assert {f"data/{layout.DATABASE}", f"data/{layout.DATABASE}-wal",
            f"data/{layout.DATABASE}-shm", f"data/{layout.DEVICE_SECRET}"} <= set(files)
    assert any(p.startswith("data/evidence/") and p.endswith(".jpg") for p in files), files
    assert files == dict.fromkeys(files, 0o600)
    assert len(folders) == 4 and folders == dict.fromkeys(folders, 0o700)  # . data evidence S


def test_a_database_made_before_is_tightened_when_opened(tmp_path, umask):
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / layout.DATABASE).close()
    (data / layout.DATABASE).chmod(0o644)  # as an earlier release left it
    Store.open(data).close()
    assert stat.S_IMODE((data / layout.DATABASE).stat().st_mode) == 0o600


def test_the_hub_file_and_its_log_are_0600(tmp_path, umask):
    db = tmp_path / "hub.db"
    done = hub_cli("add-device", "clinic-1", "--db", str(db))
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(db)  # hold the log open, as a serving hub does
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        assert hub_cli("add-reader", "lab", "--db", str(db)).returncode == 0
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("hub.db*")}
    finally:
        conn.close()
    assert modes == {"hub.db": 0o600, "hub.db-wal": 0o600, "hub.db-shm": 0o600}
    db.chmod(0o644)  # a hub file from an earlier release is tightened on the next start
    assert hub_cli("revoke-reader", "lab", "--db", str(db)).returncode == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_opening_the_store_again_keeps_the_locks_sqlite_holds_in_this_process(tmp_path):
    # making the database private must never open and close it: a closed descriptor drops
    # every POSIX lock this process holds on the file, and the last other connection to
    # close would then take itself for the only one and delete the log under our feet
    first = Store.open(tmp_path)
    try:
        first.sessions()
        Store.open(tmp_path).close()
        other = subprocess.run(
            [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "c.execute('SELECT COUNT(*) FROM sessions').fetchone(); c.close()",
             str(tmp_path / layout.DATABASE)], capture_output=True, text=True, timeout=60,
            check=False)
        assert other.returncode == 0, other.stderr
        assert (tmp_path / f"{layout.DATABASE}-wal").exists()
        assert first.sessions() == []
    finally:
        first.close()
