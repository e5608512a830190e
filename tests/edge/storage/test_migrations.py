"""A database written by release 0.1.0 opens, keeps what it holds and takes new sessions."""

from __future__ import annotations

import hashlib
import os
import sqlite3

from edge.core.labels import SessionStatus
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage.store import Store
from tests.helpers.golden import FIXTURES


def test_a_database_of_release_0_1_0_opens_and_takes_new_sessions(tmp_path):
    conn = sqlite3.connect(tmp_path / "hemascope.db")
    conn.executescript((FIXTURES / "schema-0.1.0.sql").read_text())
    conn.execute("INSERT INTO sessions (id, sample_id, profile_name, profile_json, source,"
                 " model_file, model_sha256, classes_json, hemascope_version, started_at,"
                 " ended_at, status) VALUES ('old', 'S-1', 'p', '{}', 'synthetic',"
                 " 'detector.onnx', ?, '[\"WBC\", \"RBC\", \"Platelets\"]', '0.1.0',"
                 " '2026-11-01T08:00:00', '2026-11-01T08:05:00', 'finished')", ("a" * 64,))
    conn.execute("INSERT INTO fields (session_id, idx, origin, captured_at, status,"
                 " model_sha256) VALUES ('old', 0, 'f0.jpg', '2026-11-01T08:00:01', 'skipped',"
                 " ?)", ("a" * 64,))
    conn.execute("INSERT INTO outbox (payload_key, version, sha256, body, created_at)"
                 " VALUES ('old', 1, ?, x'7b7d', '2026-11-01T08:05:00')",
                 (hashlib.sha256(b"{}").hexdigest(),))
    conn.commit()
    conn.close()

    store = Store.open(tmp_path)
    assert store.session("old").status is SessionStatus.FINISHED
    assert [f.origin for f in store.fields("old")] == ["f0.jpg"]
    sid = store.start_session(sample_id="S-2", operator=None, profile_name="p",
                              profile_json="{}", source="synthetic", model_file="d.onnx",
                              model_sha256="a" * 64, classes=["WBC", "RBC", "Platelets"],
                              version="0.1.0")
    store.add_field(sid, "a" * 64, ["WBC", "RBC", "Platelets"], FieldRecord(
        idx=0, origin="f.jpg", captured_at="2026-11-02T08:00:00", status="skipped",
        reason="unreadable image"))
    finish_session(store, sid)
    keys = [r["payload_key"] for r in store.conn.execute(
        "SELECT payload_key FROM outbox ORDER BY id")]
    assert keys == ["old", sid]  # the old payload is kept as it was, the new one queued
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 3
    store.close()


def test_a_session_left_running_in_a_0_1_0_database_has_no_owner_and_new_ones_do(tmp_path):
    conn = sqlite3.connect(tmp_path / "hemascope.db")
    conn.executescript((FIXTURES / "schema-0.1.0.sql").read_text())
    conn.execute("INSERT INTO sessions (id, sample_id, profile_name, profile_json, source,"
                 " model_file, model_sha256, classes_json, hemascope_version, started_at,"
                 " status) VALUES ('old', 'S-1', 'p', '{}', 'synthetic', 'detector.onnx', ?,"
                 " '[]', '0.1.0', '2026-11-01T08:00:00', 'running')", ("a" * 64,))
    conn.commit()
    conn.close()

    store = Store.open(tmp_path)
    sid = store.start_session(sample_id="S-2", operator=None, profile_name="p",
                              profile_json="{}", source="synthetic", model_file="d.onnx",
                              model_sha256="a" * 64, classes=[], version="0.1.0")
    owners = dict(store.running_sessions())
    assert owners["old"] is None  # recorded by no release: recovered at the next start
    assert owners[sid] is not None and owners[sid].pid == os.getpid()
    store.close()
