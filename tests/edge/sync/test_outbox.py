"""The device outbox: enqueued with the finish, immutable, versioned, canonical, size-capped."""

import base64
import hashlib
import json
import sqlite3

import numpy as np
import pytest

from edge.core.detections import Detections
from edge.core.labels import SessionStatus
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage.pseudonyms import device_secret, pseudonym
from edge.storage.store import Store
from edge.sync.models import canonical_json
from edge.sync.payload import outbox
from hub.payloads import Rejected, validate
from tests.helpers.sync import CLASSES, MODEL_SHA, amend, device_rows, make_sessions


def _session(store: Store, profile_json: str = "{}") -> str:
    return store.start_session(sample_id="S-1", operator="amina", profile_name="t",
                               profile_json=profile_json, source="synthetic",
                               model_file="m.onnx", model_sha256=MODEL_SHA, classes=CLASSES,
                               version="0")


def test_finishing_enqueues_a_canonical_payload_that_the_hub_accepts(tmp_path):
    sid = make_sessions(tmp_path, 1, seed=3)[0]
    [(key, (sha, body, state))] = device_rows(tmp_path).items()
    assert key == (sid, 1) and state == "pending"
    assert hashlib.sha256(body).hexdigest() == sha
    payload = json.loads(body)
    assert canonical_json(payload) == body
    store = Store.open(tmp_path)
    assert payload["summary"]["totals"] == store.totals(sid)
    cells = store.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    assert sum(len(f["cells"]) for f in payload["fields"]) == cells
    assert payload["model_digests"] == [MODEL_SHA] and payload["evidence"] is None
    secret = device_secret(tmp_path)  # the ids travel as their pseudonyms
    assert validate(sid, 1, sha, body).sample_id == pseudonym(secret, "sample", "S-3-00000")


def test_enqueue_failure_rolls_back_the_finish(tmp_path):
    store = Store.open(tmp_path)
    sid = _session(store)
    outbox(store)
    store.conn.execute("CREATE TRIGGER no_room BEFORE INSERT ON outbox"
                       " BEGIN SELECT RAISE(ABORT, 'outbox full'); END")
    with pytest.raises(sqlite3.DatabaseError, match="outbox full"):
        finish_session(store, sid)
    assert store.session(sid).status is SessionStatus.RUNNING
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_payloads_are_immutable_and_unsent_ones_cannot_be_deleted(tmp_path):
    sid = make_sessions(tmp_path, 1)[0]
    conn = Store.open(tmp_path).conn
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        conn.execute("UPDATE outbox SET body = x'00' WHERE payload_key = ?", (sid,))
    with pytest.raises(sqlite3.DatabaseError, match="cannot be deleted"):
        conn.execute("DELETE FROM outbox")
    conn.execute("UPDATE outbox SET state = 'sent'")
    conn.execute("DELETE FROM outbox")  # a confirmed payload may be pruned


def test_an_amendment_is_a_new_version_and_an_unchanged_session_is_not(tmp_path):
    sid = make_sessions(tmp_path, 1)[0]
    assert amend(tmp_path, sid, "amina") is None  # same operator: same bytes, no new version
    assert list(device_rows(tmp_path)) == [(sid, 1)]
    v1 = device_rows(tmp_path)[(sid, 1)]
    assert amend(tmp_path, sid, "bola") == 2
    rows = device_rows(tmp_path)
    assert rows[(sid, 1)] == v1
    assert json.loads(rows[(sid, 2)][1])["summary"]["operator"] == pseudonym(
        device_secret(tmp_path), "operator", "bola")
    assert amend(tmp_path, sid, "bola") is None


def test_interrupted_sessions_are_enqueued_too(tmp_path):
    store = Store.open(tmp_path)
    sid = _session(store)
    store.add_field(sid, MODEL_SHA, CLASSES, FieldRecord(idx=0, origin="a", captured_at="t",
                                                         status="skipped", reason="dark"))
    finish_session(store, sid, SessionStatus.INTERRUPTED)
    body = device_rows(tmp_path)[(sid, 1)][1]
    assert json.loads(body)["summary"]["status"] == "interrupted"


def test_evidence_is_off_by_default_and_capped_when_on(tmp_path):
    store = Store.open(tmp_path)
    sid = _session(store, json.dumps({"sync": {"evidence": True, "evidence_max_kb": 100}}))
    images = {}
    for i in range(3):
        rel = f"evidence/{sid}/{i:05d}.jpg"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        images[rel] = bytes([i]) * 40_000
        (tmp_path / rel).write_bytes(images[rel])
        store.add_field(sid, MODEL_SHA, CLASSES, FieldRecord(
            idx=i, origin="a", captured_at="t", status="skipped", reason="x", evidence_path=rel))
    finish_session(store, sid)
    evidence = json.loads(device_rows(tmp_path)[(sid, 1)][1])["evidence"]
    assert evidence["max_kb"] == 100 and len(evidence["images"]) == 2
    assert evidence["omitted"] == [f"evidence/{sid}/00002.jpg"]
    for rel, b64 in evidence["images"].items():
        assert base64.b64decode(b64) == images[rel]


def _tampered(body: bytes, change) -> tuple[str, bytes]:
    payload = json.loads(body)
    change(payload)
    new = canonical_json(payload)
    return hashlib.sha256(new).hexdigest(), new


@pytest.mark.parametrize(("change", "reason"), [
    (lambda p: p["summary"]["totals"].update(RBC=10**6), "totals"),
    (lambda p: p["fields"][0]["cells"].append(["WBC", 0.9, 0, 0, 1, 1]), "cells disagree"),
    (lambda p: p.update(model_digests=["0" * 64]), "model_digests"),
    (lambda p: p.update(schema="hemascope.session.v9"), "unknown payload schema"),
    (lambda p: p["summary"].update(status="running"), "summary.status"),
    (lambda p: p.update(surprise=1), "surprise"),
])
def test_the_hub_rejects_inconsistent_payloads(tmp_path, change, reason):
    sid = make_sessions(tmp_path, 1, seed=1, max_fields=1)[0]
    sha, body = device_rows(tmp_path)[(sid, 1)][:2]
    validate(sid, 1, sha, body)
    with pytest.raises(Rejected, match=reason):
        validate(sid, 1, *_tampered(body, change))


def test_the_hub_rejects_bytes_that_are_not_what_was_signed_for(tmp_path):
    sid = make_sessions(tmp_path, 1)[0]
    sha, body = device_rows(tmp_path)[(sid, 1)][:2]
    with pytest.raises(Rejected, match="sha256"):
        validate(sid, 1, "0" * 64, body)
    spaced = json.dumps(json.loads(body), indent=1).encode()
    with pytest.raises(Rejected, match="canonical"):
        validate(sid, 1, hashlib.sha256(spaced).hexdigest(), spaced)
    with pytest.raises(Rejected, match="key or version"):
        validate(sid, 2, sha, body)


def test_enqueue_inside_another_transaction_commits_with_it(tmp_path):
    sid = make_sessions(tmp_path, 1)[0]
    store = Store.open(tmp_path)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("UPDATE sessions SET operator = 'x' WHERE id = ?", (sid,))
        assert outbox(store).enqueue(sid) == 2
        raise RuntimeError("power cut before commit")
    assert list(device_rows(tmp_path)) == [(sid, 1)]


def test_sessions_finished_before_the_outbox_existed_are_enqueued_once(tmp_path):
    make_sessions(tmp_path, 4, seed=9)
    before = device_rows(tmp_path)
    store = Store.open(tmp_path)
    store.conn.execute("DROP TABLE outbox")  # a database from before sync existed
    running = _session(store)
    outbox(store)
    assert device_rows(tmp_path) == before  # same versions, same bytes; running one waits
    finish_session(store, running)
    assert set(device_rows(tmp_path)) == set(before) | {(running, 1)}


def _classified_session(tmp_path) -> tuple[str, bytes, str]:
    store = Store.open(tmp_path)
    wbc_sha = "c" * 64
    sid = store.start_session(sample_id="S-9", operator="amina", profile_name="t",
                              profile_json="{}", source="synthetic", model_file="m.onnx",
                              model_sha256=MODEL_SHA, classes=CLASSES, version="0",
                              classifiers=[{"role": "wbc", "file": "wbc.onnx",
                                            "sha256": wbc_sha, "classes": ["lymphocyte"]}])
    det = Detections.from_arrays(np.array([[0, 0, 30, 30], [40, 40, 50, 50], [60, 60, 90, 90]],
                                          np.float32), np.array([0, 1, 0]),
                                 np.array([0.9, 0.8, 0.7], np.float32))
    store.add_field(sid, MODEL_SHA, CLASSES, FieldRecord(
        idx=0, origin="f0.jpg", captured_at="2026-11-24T08:00:00", status="counted", width=640,
        height=480, detections=det, cell_labels={0: ("lymphocyte", 0.91, None),
                                                 2: ("monocyte", 0.55, None)}))
    finish_session(store, sid, SessionStatus.FINISHED)
    store.close()
    sha, body = device_rows(tmp_path)[(sid, 1)][:2]
    return sid, body, sha


def test_the_payload_carries_each_cell_label_and_every_classifier_digest(tmp_path):
    sid, body, sha = _classified_session(tmp_path)
    payload = json.loads(body)
    assert payload["fields"][0]["labels"] == [[0, "lymphocyte", 0.91], [2, "monocyte", 0.55]]
    assert payload["model_digests"] == sorted([MODEL_SHA, "c" * 64])
    validate(sid, 1, sha, body)
    with pytest.raises(Rejected, match="past its field's cells"):
        validate(sid, 1, *_tampered(body, lambda p: p["fields"][0]["labels"].append(
            [3, "basophil", 0.9])))
    with pytest.raises(Rejected, match="every classifier"):
        validate(sid, 1, *_tampered(body, lambda p: p.update(model_digests=[MODEL_SHA])))
