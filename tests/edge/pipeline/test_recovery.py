"""Sessions whose process is gone are closed as interrupted, queued and cleaned; a session whose
process still runs is never touched (real processes, real SQLite)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edge.core.detections import Detections
from edge.core.files import utc_now
from edge.core.labels import SessionStatus
from edge.core.processes import ProcessId, is_alive, this_process
from edge.core.records import FieldRecord
from edge.pipeline.recovery import recover_sessions
from edge.storage import layout
from edge.storage.store import Store

CLASSES = ["WBC", "RBC", "Platelets"]
SHA = "ab" * 32


def _start(store: Store) -> str:
    return store.start_session(sample_id="S-1", operator=None, profile_name="test",
                               profile_json="{}", source="synthetic", model_file="m.onnx",
                               model_sha256=SHA, classes=CLASSES, version="0")


def _field(store: Store, sid: str, idx: int) -> None:
    """A committed field with its evidence image, as the runner stores it."""
    rel = layout.field_image(sid, idx)
    (store.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    (store.data_dir / rel).write_bytes(b"jpeg")
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    store.add_field(sid, SHA, CLASSES, FieldRecord(
        idx=idx, origin=f"f{idx}.jpg", captured_at=utc_now(),
        status="counted", detections=Detections.from_arrays(boxes, [1]), evidence_path=rel))


def _set_owner(store: Store, sid: str, owner: ProcessId) -> None:
    store.conn.execute("UPDATE session_owners SET pid = ?, started = ? WHERE session_id = ?",
                       (owner.pid, owner.started, sid))


def _queued(store: Store, sid: str) -> bool:
    return store.conn.execute("SELECT COUNT(*) FROM outbox WHERE payload_key = ?",
                              (sid,)).fetchone()[0] == 1


def _gone_pid() -> int:
    """The pid of a process that ran and was reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_this_process_is_alive_and_a_reaped_or_reused_pid_is_not():
    me = this_process()
    assert is_alive(me)
    assert not is_alive(ProcessId(_gone_pid(), me.started))
    if me.started is not None:  # /proc: the same pid started at another time is another process
        assert not is_alive(ProcessId(me.pid, str(int(me.started) + 1)))


def test_a_killed_process_is_gone_even_before_it_is_reaped():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = ProcessId(proc.pid, None)
        assert is_alive(owner)
        proc.kill()
        deadline = time.monotonic() + 10
        while is_alive(owner) and time.monotonic() < deadline:  # a zombie until waited for
            time.sleep(0.01)
        assert not is_alive(owner)
    finally:
        proc.wait()


def test_a_session_of_a_gone_process_is_closed_queued_and_its_orphans_removed(tmp_path):
    store = Store.open(tmp_path)
    sid = _start(store)
    _field(store, sid, 0)
    time.sleep(0.01)
    _field(store, sid, 1)
    folder = tmp_path / layout.evidence_dir(sid)
    # what a kill between writing a field's files and committing it leaves behind
    orphans = [folder / ".00002.jpg.tmp", folder / "00002.jpg", folder / "00002-cell000.png",
               folder / "00002-field.png"]
    for path in orphans:
        path.write_bytes(b"x")
    _set_owner(store, sid, ProcessId(_gone_pid(), None))

    recovery = recover_sessions(store)

    assert recovery.sessions == [sid] and recovery.orphan_files == len(orphans)
    session = store.session(sid)
    assert session.status is SessionStatus.INTERRUPTED
    # ended at its last stored activity (field 1), not at the time of the recovery
    assert session.ended_at == store.fields(sid)[1].captured_at
    assert _queued(store, sid)
    assert sorted(p.name for p in folder.iterdir()) == ["00000.jpg", "00001.jpg"]
    assert [f.idx for f in store.fields(sid)] == [0, 1]
    assert recover_sessions(store).sessions == []  # once only


def test_a_reused_pid_does_not_keep_a_session_running(tmp_path):
    """The recorded pid runs (this process) but started at another time: a new process got
    the dead owner's pid, and the session is recovered."""
    store = Store.open(tmp_path)
    sid = _start(store)
    me = this_process()
    if me.started is None:
        pytest.skip("no /proc: only the pid is compared")
    _set_owner(store, sid, ProcessId(me.pid, str(int(me.started) - 1)))
    assert recover_sessions(store).sessions == [sid]
    assert store.session(sid).status is SessionStatus.INTERRUPTED and _queued(store, sid)


def test_a_session_whose_process_runs_is_left_alone(tmp_path):
    store = Store.open(tmp_path)
    sid = _start(store)  # owned by this process, which runs
    folder = tmp_path / layout.evidence_dir(sid)
    folder.mkdir(parents=True)
    (folder / ".00000.jpg.tmp").write_bytes(b"being written")
    other = Store.open(tmp_path)  # another command on the same data dir
    assert recover_sessions(other).sessions == []
    assert store.session(sid).status is SessionStatus.RUNNING
    assert (folder / ".00000.jpg.tmp").exists()


def test_a_running_session_of_an_older_release_is_recovered(tmp_path):
    """A release before the owners table recorded no process: its running session was left
    by a stopped run (devices run one hemascope release at a time)."""
    store = Store.open(tmp_path)
    sid = _start(store)
    store.conn.execute("DELETE FROM session_owners WHERE session_id = ?", (sid,))
    assert store.running_sessions() == [(sid, None)]
    assert recover_sessions(store).sessions == [sid]
    assert store.session(sid).status is SessionStatus.INTERRUPTED
