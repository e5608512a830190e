"""The audit log: hash-chained events in audit.jsonl, its head in the database; every edit,
deletion and cut is found (real files, real SQLite, real processes appending at once)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from edge.core.errors import HemascopeError
from edge.storage import audit
from edge.storage.store import Store
from tests.conftest import ROOT


@pytest.fixture
def logged(tmp_path):
    """A data dir with five events, and its log's lines."""
    store = Store.open(tmp_path)
    for i in range(5):
        audit.record(store, "test.event", {"i": i})
    store.close()
    return tmp_path, audit.log_path(tmp_path)


def _lines(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _problems(data_dir) -> list[str]:
    return audit.verify(data_dir).problems


def test_events_chain_and_verify_intact(logged):
    data, log = logged
    events = [json.loads(line) for line in _lines(log)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev"] == audit.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(events))
    result = audit.verify(data)
    assert result.problems == [] and result.events == 5 and result.last.seq == 5
    assert log.stat().st_mode & 0o777 == 0o600
    assert [e.details["i"] for e in audit.recent(data, 2)] == [3, 4]


def test_an_edited_event_is_found(logged):
    data, log = logged
    lines = _lines(log)
    lines[2] = lines[2].replace('"i":2', '"i":7')
    log.write_text("".join(lines))
    assert _problems(data) == ["line 3, event 3 (test.event at " + json.loads(lines[2])["at"]
                               + "): its content does not match its hash (edited)"]


def test_an_edited_and_rehashed_event_is_found_by_the_next_one(logged):
    data, log = logged
    lines = _lines(log)
    event = json.loads(lines[2])
    event["details"]["i"] = 7
    event["hash"] = audit.event_hash(event["seq"], event["at"], event["kind"], event["details"],
                                     event["prev"])
    lines[2] = json.dumps(event) + "\n"
    log.write_text("".join(lines))
    [problem] = _problems(data)
    assert problem.startswith("line 4, event 4") and "an event before it was replaced" in problem


def test_a_deleted_event_is_found(logged):
    data, log = logged
    lines = _lines(log)
    log.write_text("".join(lines[:1] + lines[2:]))
    [problem] = _problems(data)
    assert problem.startswith("line 2, event 3") and "event 2 was deleted" in problem


def test_events_cut_off_the_end_are_found_by_the_head_in_the_database(logged):
    data, log = logged
    lines = _lines(log)
    log.write_text("".join(lines[:3]))
    assert _problems(data) == ["the log ends at event 3 but the database recorded event 5: "
                               "events were cut off the end"]
    log.write_text("")
    assert _problems(data) == ["the log ends at event 0 but the database recorded event 5: "
                               "events were cut off the end"]
    log.unlink()
    assert "cut off the end" in _problems(data)[0]


def test_a_replaced_last_event_or_database_is_found(logged):
    data, log = logged
    lines = _lines(log)
    last = json.loads(lines[-1])
    last["details"]["i"] = 9
    last["hash"] = audit.event_hash(last["seq"], last["at"], last["kind"], last["details"],
                                    last["prev"])
    log.write_text("".join(lines[:-1]) + json.dumps(last) + "\n")
    assert _problems(data) == ["event 5 is not the one the database recorded (replaced)"]
    log.write_text("".join(lines))
    (data / "hemascope.db").unlink()
    assert _problems(data) == ["the database recorded no audit head but the log holds 5 "
                               "events (database replaced?)"]


def test_the_next_append_records_a_cut_so_the_evidence_stays(logged):
    data, log = logged
    log.write_text("".join(_lines(log)[:3]))
    store = Store.open(data)
    audit.record(store, "test.event", {"i": 5})
    store.close()
    events = [json.loads(line) for line in _lines(log)]
    assert [(e["seq"], e["kind"]) for e in events[3:]] == [(4, audit.MISMATCH), (5, "test.event")]
    assert events[3]["details"]["recorded_head"][0] == 5
    [problem] = _problems(data)  # the chain is whole again, and still tells of the cut
    assert problem.startswith("line 4, event 4 (audit.mismatch") and "cut off the end" in problem


def test_a_line_torn_by_a_power_cut_is_not_an_event_and_is_cut_by_the_next_append(logged):
    data, log = logged
    with log.open("a") as fh:
        fh.write('{"at":"2026-12-06T10:00:00","details":{"i"')  # no newline: never committed
    assert _problems(data) == []
    store = Store.open(data)
    event = audit.record(store, "test.event", {"i": 5})
    store.close()
    assert event.seq == 6 and _problems(data) == []
    assert all(line.endswith("}\n") for line in _lines(log))


def test_later_problems_are_found_after_the_first(logged):
    data, log = logged
    lines = _lines(log)
    lines[1] = "not json\n"
    lines[3] = lines[3].replace('"i":3', '"i":8')
    log.write_text("".join(lines))
    problems = _problems(data)
    assert problems[0] == "line 2 is not an audit event (edited?)"
    assert problems[1].startswith("line 4, event 4") and "(edited)" in problems[1]


def test_profile_changes_are_recorded_once_naming_the_keys(tmp_path):
    store = Store.open(tmp_path)
    base = {"qc": {"min_focus": 1.7, "enabled": True}, "device": {"name": "pi"}}
    first = audit.note_profile(store, "pi", base)
    assert first is not None and first.details["previous"] is None
    assert audit.note_profile(store, "pi", json.loads(json.dumps(base))) is None  # the same
    changed = audit.note_profile(store, "pi", {**base, "qc": {"min_focus": 0.5,
                                                              "enabled": True}})
    assert changed.details["changed"] == ["qc.min_focus"]
    assert changed.details["previous"] == first.details["digest"]
    store.close()
    assert [e.kind for e in audit.recent(tmp_path)] == ["profile.changed"] * 2


def test_an_unwritable_log_is_one_line_and_stores_nothing(tmp_path):
    store = Store.open(tmp_path)
    audit.log_path(tmp_path).mkdir()  # a folder where the log should be
    with pytest.raises(HemascopeError, match="cannot write the audit log"), \
            store.transaction():
        store.start_session(sample_id="S", operator=None, profile_name="p", profile_json="{}",
                            source="synthetic", model_file="m.onnx", model_sha256="a" * 64,
                            classes=["WBC"], version="0")
        audit.record(store, "session.start", {})
    assert store.sessions() == []  # the action rolled back with its event
    store.close()


_APPEND = """
import sys
from pathlib import Path
from edge.core.errors import HemascopeError
from edge.storage import audit
from edge.storage.store import Store
store = Store.open(Path(sys.argv[1]))
for i in range(40):
    audit.record(store, "test.concurrent", {"writer": sys.argv[2], "i": i})
store.close()
"""


def test_commands_appending_at_once_keep_one_chain(tmp_path):
    Store.open(tmp_path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _APPEND, str(tmp_path), str(w)], cwd=ROOT)
             for w in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    result = audit.verify(tmp_path)
    assert result.problems == [] and result.events == 120 and result.last.seq == 120
