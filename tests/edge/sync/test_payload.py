"""The sync payload: same bytes for the same session as release 0.1.0, built through the
wire models the hub validates with."""

from __future__ import annotations

import hashlib
import json

import hub.payloads
from edge.core.detections import Detections
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage.pseudonyms import pseudonym
from edge.storage.store import Store
from edge.sync.models import (
    FieldDetail,
    FieldSummary,
    PayloadHead,
    SessionPayload,
    canonical_json,
)
from edge.sync.payload import build_payload
from hub.payloads import validate
from tests.helpers.golden import FIXTURES, SECRET, SESSION_ID, golden_body, make_golden_session


def test_the_sync_payload_of_a_fixed_session_keeps_its_bytes(tmp_path):
    make_golden_session(tmp_path)
    body = golden_body(tmp_path)
    expected = (FIXTURES / "payload-v1.json").read_bytes()
    assert body == expected
    # ... and the hub accepts them as they are
    assert validate(SESSION_ID, 1, hashlib.sha256(body).hexdigest(), body).fields_counted == 2


def test_the_hub_still_accepts_payloads_of_devices_that_sent_ids_and_profile_in_clear():
    body = (FIXTURES / "payload-v1-clear-ids.json").read_bytes()  # before issue #20
    held = validate(SESSION_ID, 1, hashlib.sha256(body).hexdigest(), body)
    assert held.sample_id == "S-GOLD" and b'"evidence_max_kb":1' in body


def test_a_payload_carries_pseudonyms_and_the_profile_digest_not_ids_or_settings(tmp_path):
    make_golden_session(tmp_path)  # stored with its ids in clear
    body = golden_body(tmp_path)
    payload = json.loads(body)
    assert b"S-GOLD" not in body and b"amina" not in body
    assert payload["summary"]["sample_id"] == pseudonym(SECRET, "sample", "S-GOLD")
    assert payload["summary"]["operator"] == pseudonym(SECRET, "operator", "amina")
    assert payload["summary"]["sample_id"] != pseudonym(SECRET, "operator", "S-GOLD")
    stored = Store.open(tmp_path).session(SESSION_ID).profile
    assert payload["profile"] == {"name": "golden",
                                  "sha256": hashlib.sha256(canonical_json(stored)).hexdigest()}
    assert b"evidence_max_kb" not in body  # the profile's settings stay on the device


def _field(idx: int, origin: str, reason: str | None) -> FieldRecord:
    return FieldRecord(idx=idx, origin=origin, captured_at="2026-11-24T08:00:00",
                       status="skipped" if reason else "counted", reason=reason,
                       width=None if reason else 640, height=None if reason else 480,
                       detections=None if reason else Detections.empty())


def test_a_payload_names_files_without_the_folders_they_were_in(tmp_path):
    slide = "/media/usb/Clinic Records/slide 7"
    store = Store.open(tmp_path)
    sid = store.start_session(
        sample_id="S-1", operator=None, profile_name="p", profile_json="{}",
        source=f"settle(folder:{slide})", model_file="d.onnx", model_sha256="a" * 64,
        classes=["WBC"], version="0.1.0")
    for record in (
            _field(0, f"{slide}/f0.jpg", None),
            _field(1, f"{slide}/f1.jpg", f"unreadable image: [Errno 13] Permission denied: "
                                         f"'{slide}/f1.jpg'"),
            _field(2, f"{slide}/f2.png", f"disk trouble at {tmp_path}/evidence/x.tmp and in"
                                         " /etc/hemascope/profile.toml")):
        store.add_field(sid, "a" * 64, ["WBC"], record)
    finish_session(store, sid)
    body = store.conn.execute("SELECT body FROM outbox").fetchone()[0]
    summary = json.loads(body)["summary"]
    assert summary["source"] == "settle(folder:slide 7)"
    assert [f["origin"] for f in summary["fields"]] == ["f0.jpg", "f1.jpg", "f2.png"]
    assert summary["fields"][1]["reason"] == ("unreadable image: [Errno 13] Permission "
                                             "denied: 'f1.jpg'")
    assert summary["fields"][2]["reason"] == "disk trouble at evidence/x.tmp and in profile.toml"
    for secret in (b"/media", b"Clinic Records", str(tmp_path).encode(), b"/etc"):
        assert secret not in body
    assert store.fields(sid)[0].origin == f"{slide}/f0.jpg"  # the device keeps its own record
    assert store.session(sid).source == f"settle(folder:{slide})"
    store.close()


def test_a_video_source_is_named_by_its_file(tmp_path):
    store = Store.open(tmp_path)
    sid = store.start_session(
        sample_id="S-1", operator=None, profile_name="p", profile_json="{}",
        source="video:/home/lab/recordings/run 3.mp4", model_file="d.onnx",
        model_sha256="a" * 64, classes=["WBC"], version="0.1.0")
    store.add_field(sid, "a" * 64, ["WBC"], _field(0, "/home/lab/recordings/run 3.mp4#12", None))
    finish_session(store, sid)
    summary = build_payload(store, sid, 1).summary
    assert summary.source == "video:run 3.mp4" and summary.fields[0].origin == "run 3.mp4#12"
    store.close()


def test_the_device_builds_its_payload_from_the_models_the_hub_validates(tmp_path):
    # one definition, imported by the hub: the head and field models, and the rules
    assert hub.payloads.PayloadHead is PayloadHead and issubclass(SessionPayload, PayloadHead)
    assert hub.payloads.FieldDetail is FieldDetail and hub.payloads.FieldSummary is FieldSummary
    make_golden_session(tmp_path)
    store = Store.open(tmp_path)
    payload = build_payload(store, SESSION_ID, 1)
    assert payload.fields[0].labels[0][1] == "neutrophil"
    # a field without classified cells carries no "labels" key at all, as before the models
    assert "labels" not in payload.fields[3].model_fields_set
    assert "labels" not in json.loads(golden_body(tmp_path))["fields"][3]
    queued = store.conn.execute("SELECT body FROM outbox WHERE payload_key = ?",
                                (SESSION_ID,)).fetchone()["body"]
    again = SessionPayload.model_validate_json(queued)  # what the hub reads back ...
    assert canonical_json(again.model_dump(mode="json", by_alias=True,
                                           exclude_unset=True)) == queued  # ... is the bytes
    store.close()
