"""The audit trail through the real CLI: runs, a profile change, a USB bundle, a sync to a
real hub and a recovered session each leave their event; `hemascope audit verify` passes,
then names the first bad event after an edit, a deletion or a cut (issue #20)."""

import os
from pathlib import Path

from edge.cli.doctor import run_checks
from edge.storage import audit
from edge.storage.store import Store
from tests.conftest import run_cli
from tests.helpers.sync import Hub, device_profile, hub_db


def _kinds(data: Path) -> list[str]:
    return [e.kind for e in audit.recent(data, 1000)]


def test_what_happened_is_logged_and_any_change_to_the_log_is_found(request, tmp_path):
    hub = Hub(hub_db(request, "sqlite", tmp_path), tmp_path).start()
    try:
        data = tmp_path / "device"
        profile = device_profile(tmp_path, data, hub.url, hub.add_device("audited"))
        base = profile.read_text()
        profile.write_text(base + "[source]\nsynthetic_fields = 2\n")
        for _ in range(2):
            assert run_cli("run", "-p", str(profile)).returncode == 0
        profile.write_text(base + "[source]\nsynthetic_fields = 2\n[qc]\nmin_focus = 1.0\n")
        assert run_cli("run", "-p", str(profile)).returncode == 0
        assert run_cli("bundle", "export", str(tmp_path / "stick"), "-p",
                       str(profile)).returncode == 0
        assert run_cli("sync", "-p", str(profile)).returncode == 0
    finally:
        hub.stop()
    # a run killed outright: its session is recovered by the next command
    store = Store.open(data)
    killed = store.start_session(sample_id="S", operator=None, profile_name="p",
                                 profile_json="{}", source="synthetic", model_file="m.onnx",
                                 model_sha256="a" * 64, classes=["WBC"], version="0")
    store.conn.execute("UPDATE session_owners SET pid = ? WHERE session_id = ?",
                       (2**22 + 1, killed))  # above Linux's pid_max: no such process
    store.close()
    assert run_cli("sessions", "-p", str(profile)).returncode == 0

    run = ["profile.changed", "session.start", "model.loaded", "session.stop"]
    assert _kinds(data) == [*run, *run[1:], *run, "bundle.export", "sync", "session.recovered"]
    events = audit.recent(data, 1000)
    changed = [e for e in events if e.kind == "profile.changed"]
    assert changed[1].details["changed"] == ["qc.min_focus"]
    assert changed[1].details["previous"] == changed[0].details["digest"]
    starts = [e for e in events if e.kind == "session.start"]
    loaded = [e for e in events if e.kind == "model.loaded"]
    recorded = {s.id: s.model_digest for s in Store.open(data).sessions()}
    assert [e.details["digest"] for e in loaded] == [recorded[e.details["session"]]
                                                    for e in starts]
    sync = next(e for e in events if e.kind == "sync")
    assert sync.details["stored"] == 3 and sync.details["error"] is None
    assert next(e for e in events if e.kind == "bundle.export").details["payloads"] == 3
    assert next(e for e in events if e.kind == "session.recovered").details["session"] == killed

    verified = run_cli("audit", "verify", "-p", str(profile))
    assert verified.returncode == 0 and f"{len(events)} events, intact" in verified.stdout
    shown = run_cli("audit", "show", "-n", "3", "-p", str(profile))
    assert shown.returncode == 0 and "session.recovered" in shown.stdout
    assert "profile.changed" not in shown.stdout

    log = audit.log_path(data)
    genuine = log.read_bytes()
    lines = genuine.decode().splitlines(keepends=True)
    # an edit: the second run's stop says 'interrupted' instead of 'finished'
    edited = lines[6].replace('"status":"finished"', '"status":"interrupted"')
    assert edited != lines[6]
    for tampered, problem in [
            ("".join([*lines[:6], edited, *lines[7:]]), "line 7, event 7 (session.stop"),
            ("".join(lines[:4] + lines[5:]), "line 5, event 6 (model.loaded"),
            ("".join(lines[:-2]), f"the log ends at event {len(lines) - 2} but the database "
                                  f"recorded event {len(lines)}")]:
        log.write_text(tampered)
        result = run_cli("audit", "verify", "-p", str(profile))
        assert result.returncode == 1 and problem in result.stderr.splitlines()[0], \
            result.stderr
        checks = {c.name: c for c in run_checks(profile)}
        assert checks["audit"].status == "fail" and problem in checks["audit"].detail
    log.write_bytes(genuine)
    assert run_cli("audit", "verify", "-p", str(profile)).returncode == 0
    assert os.stat(log).st_mode & 0o777 == 0o600
