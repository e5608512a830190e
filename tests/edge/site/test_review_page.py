"""The review page's server for real on 127.0.0.1: the token is required, every action goes
through its JSON API into the store beside the model output, and Done ends it."""

import http.client
import json
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest

from edge.site.review_page import ReviewServer, ReviewSession
from edge.storage import audit
from edge.storage.store import Store
from tests.helpers.review import make_review_session, payload_versions


@pytest.fixture
def served(tmp_path):
    """(server, data dir, session id) with the server running in a thread."""
    sid = make_review_session(tmp_path)
    store = Store.open(tmp_path)
    server = ReviewServer(ReviewSession(store, sid, "amina"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, tmp_path, sid
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()


def _request(server, method, path, body=None, token=True, host=None):
    """(status, body bytes) of one request; `token` False sends none, a str sends that."""
    port = server.server_address[1]
    sep = "&" if "?" in path else "?"
    if token is True:
        path += f"{sep}token={server.token}"
    elif token:
        path += f"{sep}token={token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{port}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def _reviews(data, sid):
    store = Store.open(data)
    try:
        return [(r.field_idx, r.cell, r.label, r.reviewer, r.origin) for r in store.reviews(sid)]
    finally:
        store.close()


def test_it_listens_on_127_0_0_1_only_and_prints_a_tokened_url(served):
    server, _, _ = served
    assert server.server_address[0] == "127.0.0.1"
    url = urlsplit(server.url)
    assert url.hostname == "127.0.0.1" and url.query == f"token={server.token}"
    assert len(server.token) >= 32


@pytest.mark.parametrize("path", ["/", "/api/state", "/evidence/x.png"])
def test_without_the_token_every_request_is_403(served, path):
    server, _, _ = served
    assert _request(server, "GET", path, token=False)[0] == 403
    assert _request(server, "GET", path, token="not-the-token")[0] == 403
    assert _request(server, "GET", path, host="attacker.example")[0] == 403


def test_an_action_without_the_token_is_403_and_stores_nothing(served):
    server, data, sid = served
    cells = {"cells": [{"field": 0, "cell": 0, "label": "ig"}]}
    assert _request(server, "POST", "/api/cells", cells, token=False)[0] == 403
    assert _request(server, "POST", "/api/field", {"field": 0, "rejected": True,
                                                   "reason": "x"}, token="nope")[0] == 403
    assert _request(server, "POST", "/api/done", {}, token=False)[0] == 403
    assert _reviews(data, sid) == []


def test_the_page_is_self_contained(served):
    server, _, _ = served
    status, page = _request(server, "GET", "/")
    assert status == 200
    text = page.decode()
    assert "<script>" in text and "<style>" in text and "Enter" in text
    assert "http://" not in text and "https://" not in text and "src=\"" not in text


def test_state_lists_cells_by_model_class_and_fields_with_evidence(served):
    server, data, sid = served
    status, body = _request(server, "GET", "/api/state")
    state = json.loads(body)
    assert status == 200 and state["reviewer"] == "amina"
    assert state["session"]["id"] == sid and "neutrophil" in state["classes"]
    assert [(c["field"], c["cell"], c["model"], c["label"]) for c in state["cells"]][:3] == [
        (0, 0, "neutrophil", None), (0, 1, "neutrophil", None), (0, 2, "lymphocyte", None)]
    assert [f["idx"] for f in state["fields"]] == [0, 1, 2]
    crop = state["cells"][0]["crop"]
    status, png = _request(server, "GET", "/" + crop)
    assert status == 200 and png == (data / crop).read_bytes()
    evidence = state["fields"][0]["evidence"]
    assert _request(server, "GET", "/" + evidence)[1] == (data / evidence).read_bytes()


@pytest.mark.parametrize("path", ["/evidence/../hemascope.db", "/evidence/x/../../hemascope.db",
                                  "/hemascope.db"])
def test_only_the_sessions_evidence_is_served(served, path):
    server, _, _ = served
    assert _request(server, "GET", path)[0] == 404


def test_a_relabel_through_the_api_is_stored_beside_the_model_output(served):
    server, data, sid = served
    status, body = _request(server, "POST", "/api/cells", {"cells": [
        {"field": 0, "cell": 1, "label": "ig"}, {"field": 0, "cell": 0, "label": "neutrophil"}]})
    assert status == 200
    state = json.loads(body)
    assert [(c["field"], c["cell"], c["label"]) for c in state["cells"][:2]] == [
        (0, 0, "neutrophil"), (0, 1, "ig")]
    assert _reviews(data, sid) == [(0, 0, "neutrophil", "amina", "review page"),
                                   (0, 1, "ig", "amina", "review page")]
    store = Store.open(data)
    assert [c.label for c in store.classified_cells(sid)][:2] == ["neutrophil", "neutrophil"]
    store.close()
    [event] = audit.recent(data, kind="review")
    assert (event.kind, event.details["session"], event.details["cells"]) == \
        ("review.cells", sid, 2)


@pytest.mark.parametrize(("body", "message"), [
    ({"cells": [{"field": 0, "cell": 0, "label": "blast"}]}, "not a class of the model"),
    ({"cells": [{"field": 0, "cell": 0, "label": "ig"}, {"field": 5, "cell": 0,
                                                        "label": "ig"}]}, "field 5 has no"),
    ({"cells": []}, "no cells given"),
    ({"cell": 1}, "malformed request"),
])
def test_a_wrong_action_is_400_and_stores_nothing(served, body, message):
    server, data, sid = served
    status, answer = _request(server, "POST", "/api/cells", body)
    assert status == 400 and message in json.loads(answer)["error"]
    assert _reviews(data, sid) == []


def test_a_field_is_rejected_only_with_a_reason_and_can_be_restored(served):
    server, data, sid = served
    status, answer = _request(server, "POST", "/api/field", {"field": 1, "rejected": True,
                                                              "reason": "  "})
    assert status == 400 and "with a reason" in json.loads(answer)["error"]
    status, answer = _request(server, "POST", "/api/field", {"field": 1, "rejected": True,
                                                              "reason": "smudged"})
    assert status == 200
    assert [(f["idx"], f["rejected"], f["reason"]) for f in json.loads(answer)["fields"]][1] == (
        1, True, "smudged")
    store = Store.open(data)
    [verdict] = store.field_reviews(sid)
    assert (verdict.field_idx, verdict.rejected, verdict.reason, verdict.reviewer) == (
        1, True, "smudged", "amina")
    store.close()
    _request(server, "POST", "/api/field", {"field": 1, "rejected": False})
    assert json.loads(_request(server, "GET", "/api/state")[1])["fields"][1]["rejected"] is False
    assert [(e.kind, e.details["field"], e.details["rejected"])
            for e in audit.recent(data, kind="review")] == [("review.field", 1, True),
                                                             ("review.field", 1, False)]


def test_done_ends_the_server_and_the_review_queues_the_next_payload_version(tmp_path):
    sid = make_review_session(tmp_path)
    store = Store.open(tmp_path)
    review = ReviewSession(store, sid, "amina")
    server = ReviewServer(review)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _request(server, "POST", "/api/cells", {"cells": [{"field": 2, "cell": 1, "label": "ig"}]})
    req = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/api/done"
                                 f"?token={server.token}", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read()) == {"done": True}
    thread.join(10)
    assert not thread.is_alive()
    server.server_close()
    end = review.finish()
    assert (end.cells, end.fields, end.payload_version) == (1, 0, 2)
    store.close()
    assert payload_versions(tmp_path, sid) == [1, 2]


def test_verdicts_of_a_review_killed_before_its_end_are_queued_by_the_next_one(tmp_path):
    sid = make_review_session(tmp_path)
    store = Store.open(tmp_path)
    ReviewSession(store, sid, "amina").relabel([(0, 0, "ig")])  # ... then SIGKILL: no finish
    assert payload_versions(tmp_path, sid) == [1]
    again = ReviewSession(store, sid, "amina")
    assert again.caught_up == 2 and payload_versions(tmp_path, sid) == [1, 2]
    assert again.finish().payload_version is None  # nothing new since
    store.close()
