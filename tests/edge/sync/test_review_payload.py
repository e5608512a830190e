"""A review travels as a new payload version: the corrections beside the model output, checked
by the hub so that a payload cannot claim a review it does not carry."""

import hashlib
import json

import pytest

from edge.storage.store import Store
from edge.sync.models import canonical_json
from edge.sync.payload import requeue
from hub.payloads import Rejected, validate
from tests.helpers.review import make_review_session, payload_versions
from tests.helpers.sync import device_rows


def _reviewed(tmp_path) -> str:
    sid = make_review_session(tmp_path)
    store = Store.open(tmp_path)
    store.add_reviews(sid, [(0, 0, "neutrophil"), (0, 2, "monocyte")], "amina", "review page")
    store.add_field_review(sid, 1, True, "smudged", "amina", "review page")
    assert requeue(store, sid) == 2
    assert requeue(store, sid) is None  # nothing changed since: no new version
    store.close()
    return sid


def test_a_review_is_queued_as_version_2_with_every_verdict_and_the_hub_accepts_it(tmp_path):
    sid = _reviewed(tmp_path)
    assert payload_versions(tmp_path, sid) == [1, 2]
    rows = device_rows(tmp_path)
    first, second = (json.loads(rows[(sid, v)][1]) for v in (1, 2))
    assert "reviews" not in first and first["summary"]["review"] is None
    assert second["reviews"]["cells"] == [
        {"field": 0, "cell": 0, "label": "neutrophil", "reviewer": "amina",
         "at": second["reviews"]["cells"][0]["at"], "origin": "review page"},
        {"field": 0, "cell": 2, "label": "monocyte", "reviewer": "amina",
         "at": second["reviews"]["cells"][1]["at"], "origin": "review page"}]
    assert [(f["field"], f["rejected"], f["reason"]) for f in second["reviews"]["fields"]] == [
        (1, True, "smudged")]
    review = second["summary"]["review"]
    assert (review["reviewed_cells"], review["changed"], review["agreement"]) == (2, 1, 0.5)
    # the model's output is carried unchanged beside the review
    assert second["fields"] == first["fields"]
    assert second["summary"]["differential"] == first["summary"]["differential"]
    sha, body, _ = rows[(sid, 2)]
    assert validate(sid, 2, sha, body).version == 2


def _tampered(body: bytes, change) -> tuple[str, bytes]:
    payload = json.loads(body)
    change(payload)
    new = canonical_json(payload)
    return hashlib.sha256(new).hexdigest(), new


@pytest.mark.parametrize(("change", "reason"), [
    (lambda p: p.pop("reviews"), "summary.review without the reviews"),
    (lambda p: p["summary"].update(review=None), "reviews without summary.review"),
    (lambda p: p["summary"]["review"].update(changed=0), "summary.review disagrees"),
    (lambda p: p["summary"]["review"].update(reviewed_cells=40), "summary.review disagrees"),
    (lambda p: p["summary"]["review"].update(rejected_fields=[]), "summary.review disagrees"),
    (lambda p: p["reviews"]["cells"][0].update(cell=7), "no classified cell"),
    (lambda p: p["reviews"]["fields"][0].update(field=9), "field the payload does not carry"),
    (lambda p: p["reviews"]["cells"][0].update(extra=1), "extra"),
])
def test_the_hub_refuses_a_payload_whose_review_does_not_add_up(tmp_path, change, reason):
    sid = _reviewed(tmp_path)
    body = device_rows(tmp_path)[(sid, 2)][1]
    with pytest.raises(Rejected, match=reason):
        validate(sid, 2, *_tampered(body, change))


def test_a_never_reviewed_payload_cannot_claim_a_review(tmp_path):
    sid = make_review_session(tmp_path)
    body = device_rows(tmp_path)[(sid, 1)][1]
    claim = {"reviewed_cells": 8, "changed": 0, "agreement": 1.0, "rejected_fields": []}
    with pytest.raises(Rejected, match=r"summary\.review without the reviews"):
        validate(sid, 1, *_tampered(body, lambda p: p["summary"].update(review=claim)))
