"""Real `hemascope run` processes filling a real small disk (a 4 MB tmpfs; mounting needs
root, the tests skip without it): one line and exit code 2, the session interrupted and
queued for sync, nothing stored lost or damaged, and a refused start creates no session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from edge.storage import layout
from scripts.kill_runs import audit, read_db, session_of, start_run, wait_fields
from tests.conftest import run_cli

MB = 2**20


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _images(datasets: Path, dst: Path, n: int) -> Path:
    dst.mkdir()
    for p in sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:n]:
        shutil.copy2(p, dst / p.name)
    return dst


def _fill(disk: Path, leave_mb: float) -> Path:
    """A file taking the disk's free space but `leave_mb` (0: every byte it can)."""
    filler = disk / "filler"
    left = max(0, shutil.disk_usage(disk).free - int(leave_mb * MB)) if leave_mb else 8 * MB
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while left > 0:
            left -= os.write(fd, bytes(min(left, 64 * 1024)))
    except OSError:  # the disk is full: what was written stays
        pass
    finally:
        os.close(fd)
    return filler


def _profile(tmp_path: Path, data: Path) -> Path:
    profile = tmp_path / "small-disk.toml"
    profile.write_text(f"[storage]\ndata_dir = '{data}'\nmin_free_mb = 0\nreserve_mb = 0.5\n")
    return profile


def _sessions(data: Path) -> int:
    conn = read_db(data)
    try:
        return conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    finally:
        conn.close()


def _one_line_error(result: subprocess.CompletedProcess, says: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(errors) == 1 and says in errors[0], (
        result.stderr)


def test_a_full_disk_ends_the_session_interrupted_and_queued(tmp_path, datasets, small_disk):
    data = small_disk / "data"
    profile = _profile(tmp_path, data)
    few, many = _images(datasets, tmp_path / "few", 3), _images(datasets, tmp_path / "many", 80)
    first = run_cli("run", "-p", str(profile), "-s", f"folder:{few}", "--sample", "S-FIRST")
    assert first.returncode == 0, first.stderr
    before = session_of(data, "S-FIRST")
    assert (data / layout.RESERVE).stat().st_blocks * 512 >= 0.5 * MB

    filler = _fill(small_disk, leave_mb=1.0)  # the run fills the rest with its fields
    full = run_cli("run", "-p", str(profile), "-s", f"folder:{many}", "--sample", "S-FULL")
    _one_line_error(full, "is full")
    session = session_of(data, "S-FULL")
    assert session["status"] == "interrupted" and session["queued"]
    assert 0 < len(session["fields"]) < 80  # it stored fields until the disk was full
    assert not (data / layout.RESERVE).exists()  # released to close the session
    assert session_of(data, "S-FIRST") == before
    checks = audit(data)
    assert checks["integrity"] == "ok" and checks["field_files_missing"] == 0
    assert checks["orphan_files"] == [] and checks["sessions_with_field_gaps"] == 0
    assert checks["interrupted_not_in_outbox"] == [] and checks["by_status"]["running"] == 0
    assert checks["audit_problems"] == [] and checks["ended_sessions_without_end_event"] == []

    for _ in range(2):  # no room for the reserve: refused before any session exists
        refused = run_cli("run", "-p", str(profile), "-s", f"folder:{few}", "--sample", "S-NO")
        _one_line_error(refused, "storage.reserve_mb")
    assert _sessions(data) == 2 and session_of(data, "S-NO") is None
    listed = run_cli("sessions", "-p", str(profile))
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    # wide enough that the disk row never wraps, however long the tmp path (xdist adds to it)
    doctor = run_cli("doctor", "-p", str(profile), env={"COLUMNS": "1000"})
    disk = next(line for line in doctor.stdout.splitlines() if "│ disk" in line)
    assert doctor.returncode == 1 and "fail" in disk and "needed to start a run" in disk, (
        doctor.stdout)

    filler.unlink()  # room again: runs work and the reserve is made again
    again = run_cli("run", "-p", str(profile), "-s", f"folder:{few}", "--sample", "S-AGAIN")
    assert again.returncode == 0, again.stderr
    assert session_of(data, "S-AGAIN")["status"] == "finished"
    assert (data / layout.RESERVE).stat().st_blocks * 512 >= 0.5 * MB
    assert session_of(data, "S-FULL") == session
    assert audit(data)["audit_problems"] == []


def test_a_run_killed_on_a_full_disk_is_recovered_with_the_reserve(tmp_path, datasets,
                                                                    small_disk):
    data = small_disk / "data"
    profile = _profile(tmp_path, data)
    images = _images(datasets, tmp_path / "images", 60)
    proc = start_run(images, data, "S-KILLED", tmp_path / "run.log",
                     extra=["-p", str(profile)])
    wait_fields(data, "S-KILLED", 2, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    at_kill = session_of(data, "S-KILLED")
    _fill(small_disk, leave_mb=0)
    assert shutil.disk_usage(small_disk).free < 64 * 1024

    listed = run_cli("sessions", "-p", str(profile))  # a start: it recovers the session
    assert listed.returncode == 0 and "recovered 1 sessions" in listed.stderr, listed.stderr
    assert session_of(data, "S-KILLED") == {**at_kill, "status": "interrupted", "queued": True}
    assert not (data / layout.RESERVE).exists()
    checks = audit(data)
    assert checks["integrity"] == "ok" and checks["by_status"]["running"] == 0
    assert checks["orphan_files"] == [] and checks["audit_problems"] == []
