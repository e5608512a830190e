"""Real `hemascope run` processes on a BCCD folder, stopped by SIGKILL, SIGTERM and SIGHUP:
no session is left running, every committed field is kept with its files, nothing is left
behind, and a run going on beside them on the same data dir is never touched."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from edge.storage import layout
from scripts.kill_runs import audit, session_of, start_run, wait_fields
from tests.conftest import run_cli


def _images(datasets: Path, dst: Path, n: int) -> Path:
    dst.mkdir()
    for p in sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:n]:
        shutil.copy2(p, dst / p.name)
    return dst


def _stop(proc: subprocess.Popen, sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def test_a_killed_run_is_recovered_by_the_next_command(tmp_path, datasets):
    images, data = _images(datasets, tmp_path / "images", 60), tmp_path / "data"
    proc = start_run(images, data, "S-KILL", tmp_path / "run.log")
    wait_fields(data, "S-KILL", 2, proc)
    assert _stop(proc, signal.SIGKILL) == -signal.SIGKILL
    at_kill = session_of(data, "S-KILL")
    assert at_kill["status"] == "running" and not at_kill["queued"]  # nothing closed it
    # what a kill between writing a field's files and committing it leaves behind
    folder = data / layout.evidence_dir(at_kill["id"])
    planted = [folder / ".99990.jpg.tmp", folder / "99990.jpg", folder / "99990-cell000.png"]
    for path in planted:
        path.write_bytes(b"x")

    profile = tmp_path / "profile.toml"
    profile.write_text(f"[storage]\ndata_dir = '{data}'\n")
    doctor = run_cli("doctor", "-p", str(profile))
    assert "recovery" in doctor.stdout and "closed 1 sessions left running" in doctor.stdout, (
        doctor.stdout)
    assert at_kill["id"][:12] in doctor.stdout

    listed = run_cli("sessions", "--data-dir", str(data))
    assert listed.returncode == 0 and "interrupted" in listed.stdout and "running" not in (
        listed.stdout)
    report = run_cli("report", at_kill["id"][:8], "--data-dir", str(data), "--json",
                     str(tmp_path / "r.json"))
    assert report.returncode == 0 and "(interrupted)" in report.stdout
    after = session_of(data, "S-KILL")
    assert after == {**at_kill, "status": "interrupted", "queued": True}  # fields kept
    checks = audit(data)
    assert checks["integrity"] == "ok" and checks["field_files_missing"] == 0
    assert checks["orphan_files"] == [] and not any(p.exists() for p in planted)
    assert checks["interrupted_not_in_outbox"] == [] and checks["by_status"]["running"] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_end_the_session_at_once_as_ctrl_c_does(tmp_path, datasets, sig):
    images, data = _images(datasets, tmp_path / "images", 60), tmp_path / "data"
    proc = start_run(images, data, "S-SIG", tmp_path / "run.log")
    wait_fields(data, "S-SIG", 1, proc)
    assert _stop(proc, sig) == 130  # the exit code of Ctrl-C
    session = session_of(data, "S-SIG")  # read-only: no later command has recovered it
    assert session["status"] == "interrupted" and session["queued"] and session["fields"]
    assert session["fields"] == list(range(len(session["fields"])))
    checks = audit(data)
    assert checks["orphan_files"] == [] and checks["field_files_missing"] == 0


def test_a_run_killed_beside_another_leaves_the_other_untouched(tmp_path, datasets):
    images, data = _images(datasets, tmp_path / "images", 150), tmp_path / "data"
    killed = start_run(images, data, "S-A", tmp_path / "a.log")
    wait_fields(data, "S-A", 1, killed)
    going = start_run(images, data, "S-B", tmp_path / "b.log")
    try:
        wait_fields(data, "S-B", 1, going)
        _stop(killed, signal.SIGKILL)
        listed = run_cli("sessions", "--data-dir", str(data))
        assert listed.returncode == 0 and "recovered 1 sessions" in listed.stderr
        assert going.poll() is None, "the other run ended before the check: it proves nothing"
        assert session_of(data, "S-A")["status"] == "interrupted"
        assert session_of(data, "S-B")["status"] == "running"
    finally:
        stopped = _stop(going, signal.SIGTERM)
    assert stopped == 130
    b = session_of(data, "S-B")  # closed by its own process, with all it stored
    assert b["status"] == "interrupted" and b["queued"] and b["fields"]
    assert audit(data)["orphan_files"] == []
