"""The sync payload: same bytes for the same session as release 0.1.0, built through the
wire models the hub validates with."""

from __future__ import annotations

import hashlib
import json

import hub.payloads
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
from tests.helpers.golden import FIXTURES, SESSION_ID, golden_body, make_golden_session


def test_the_sync_payload_of_a_fixed_session_keeps_its_bytes(tmp_path):
    make_golden_session(tmp_path)
    body = golden_body(tmp_path)
    expected = (FIXTURES / "payload-v1.json").read_bytes()
    assert body == expected
    # ... and the hub accepts them as they are
    assert validate(SESSION_ID, 1, hashlib.sha256(body).hexdigest(), body).fields_counted == 2


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
