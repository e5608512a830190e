import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from edge.core.detections import Detections
from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage.store import Store
from tests.conftest import ROOT

CLASSES = ["WBC", "RBC", "Platelets"]
SHA = "ab" * 32  # a model digest


def _start(store: Store) -> str:
    return store.start_session(sample_id="S-1", operator="amina", profile_name="test",
                               profile_json="{}", source="synthetic", model_file="m.onnx",
                               model_sha256=SHA, classes=CLASSES, version="0")


def _record(idx: int, classes: list[int]) -> FieldRecord:
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (len(classes), 1))
    return FieldRecord(idx=idx, origin=f"f{idx}", captured_at="2026-01-01T00:00:00",
                       status="counted", detections=Detections.from_arrays(boxes, classes))


def test_totals_are_sums_of_counted_fields(tmp_path):
    store = Store.open(tmp_path)
    sid = _start(store)
    store.add_field(sid, SHA, CLASSES, _record(0, [0, 1, 1, 2]))
    store.add_field(sid, SHA, CLASSES, _record(1, [1, 1, 1]))
    store.add_field(sid, SHA, CLASSES, FieldRecord(idx=2, origin="bad.jpg", captured_at="x",
                                                     status="skipped", reason="truncated"))
    assert store.totals(sid) == {"WBC": 1, "RBC": 5, "Platelets": 1}
    assert store.field_counts(sid)[1] == {"WBC": 0, "RBC": 3, "Platelets": 0}
    row = store.sessions()[0]
    assert row.fields_by_status == {FieldStatus.COUNTED: 2, FieldStatus.REJECTED: 0,
                                    FieldStatus.SKIPPED: 1}


def test_a_failing_field_leaves_nothing_half_written(tmp_path):
    store = Store.open(tmp_path)
    sid = _start(store)
    store.add_field(sid, SHA, CLASSES, _record(0, [1]))
    with pytest.raises(sqlite3.IntegrityError):  # same idx twice: the insert fails
        store.add_field(sid, SHA, CLASSES, _record(0, [1, 1, 1]))
    # a class id outside the class list fails after the field row was inserted
    with pytest.raises(IndexError):
        store.add_field(sid, SHA, CLASSES, _record(1, [7]))
    assert [f.idx for f in store.fields(sid)] == [0]
    assert store.totals(sid) == {"WBC": 0, "RBC": 1, "Platelets": 0}
    assert store.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 1


def test_data_survives_reopening(tmp_path):
    store = Store.open(tmp_path)
    sid = _start(store)
    store.add_field(sid, SHA, CLASSES, _record(0, [0, 1]))
    finish_session(store, sid)
    store.close()
    again = Store.open(tmp_path)
    assert again.session(sid[:8]).status == "finished"
    assert again.totals(sid) == {"WBC": 1, "RBC": 1, "Platelets": 0}


def test_unknown_session_prefix(tmp_path):
    with pytest.raises(HemascopeError, match="no session"):
        Store.open(tmp_path).session("ffff")


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HemascopeError, match="not writable"):
        Store.open(blocker / "data")


# One racer: says it is ready, waits for the start file, then opens and closes 40 new
# databases in turn, printing what each open said.
_RACER = """
import sqlite3, sys, time
from pathlib import Path
from edge.storage.store import Store
root = Path(sys.argv[1])
(root / f"ready-{sys.argv[2]}").touch()
while not (root / "go").exists():
    time.sleep(0.001)
for i in range(40):
    try:
        Store.open(root / str(i)).close()
        print("ok")
    except sqlite3.OperationalError as exc:
        print(exc)
"""


def test_two_processes_opening_a_new_database_at_once_both_succeed(tmp_path):
    """Both switch each new database to WAL at once; SQLite refuses one without waiting
    ('database is locked') without the busy wait: it is tried again. Two interpreters
    released together (a multiprocessing pool in this multithreaded test process hung
    twice in 20 runs: its result thread died)."""
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), str(n)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for n in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{n}").exists() for n in range(2)):
            assert time.monotonic() < deadline, "a racer never started"
            time.sleep(0.005)
        (tmp_path / "go").touch()
        for racer in racers:
            out, err = racer.communicate(timeout=120)
            assert racer.returncode == 0, err[-2000:]
            assert out.splitlines() == ["ok"] * 40
    finally:
        for racer in racers:
            racer.kill()
