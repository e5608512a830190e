"""Device sync against a real hub process, on SQLite and on a real PostgreSQL server."""

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from edge.storage.store import Store
from edge.sync.models import canonical_json
from tests.conftest import run_cli
from tests.helpers.sync import (
    amend,
    as_upload,
    device_profile,
    device_rows,
    get,
    hub_cli,
    make_sessions,
    post,
)


def _enrol(hub, tmp_path, n: int, **sync):
    device = f"dev-{uuid.uuid4().hex[:8]}"
    token = hub.add_device(device)
    data = tmp_path / device
    make_sessions(data, n, seed=n)
    return device, token, data, device_profile(tmp_path, data, hub.url, token, **sync)


def _held(hub, device: str) -> dict:
    return {(k, v): (sha, body) for (d, k, v), (sha, body) in hub.rows().items() if d == device}


def _uploads(data) -> list[dict]:
    return [as_upload(k, v, sha, body) for (k, v), (sha, body, _) in device_rows(data).items()]


def test_sync_stores_every_payload_version_once_byte_identical(hub, tmp_path):
    device, token, data, profile = _enrol(hub, tmp_path, 23, batch_size=5)
    sid = next(iter(device_rows(data)))[0]
    assert amend(data, sid, "bola") == 2
    done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 0, done.stderr
    assert "24 stored, 0 already at the hub, 0 rejected, 0 pending" in done.stdout
    rows = device_rows(data)
    assert _held(hub, device) == {k: (sha, body) for k, (sha, body, _) in rows.items()}
    assert {state for _, _, state in rows.values()} == {"sent"}
    again = run_cli("sync", "-p", str(profile))
    assert "0 stored" in again.stdout and len(_held(hub, device)) == 24
    status, answer = post(hub.url, token, _uploads(data)[:5])  # answers lost: sent again
    assert status == 200 and {r["status"] for r in answer["results"]} == {"duplicate"}
    reader = hub.reader
    status, body, _ = get(f"{hub.url}/v1/devices/{device}/sessions", reader)
    listed = json.loads(body)
    assert status == 200
    assert len(listed) == 24 and {s["session_id"] for s in listed} == {k for k, _ in rows}
    assert get(f"{hub.url}/v1/devices/{device}/sessions/{sid}/2", reader)[1] == rows[(sid, 2)][1]
    page = get(hub.url.removesuffix("/api") + f"/devices/{device}", reader)[1].decode()
    assert json.loads(rows[(sid, 2)][1])["summary"]["sample_id"] in page


def test_missing_wrong_or_revoked_token_is_refused_and_writes_nothing(hub, tmp_path):
    device, token, data, profile = _enrol(hub, tmp_path, 3)
    uploads = _uploads(data)
    secret = token.split(".", 1)[1]
    assert post(hub.url, None, uploads)[0] == 401
    assert post(hub.url, "not-a-token", uploads)[0] == 401
    assert post(hub.url, f"{device}.{secret[::-1]}", uploads)[0] == 401
    assert post(hub.url, f"nobody.{secret}", uploads)[0] == 401
    assert hub_cli("revoke-device", device, "--db", hub.db).returncode == 0
    status, answer = post(hub.url, token, uploads)
    assert status == 403 and "revoked" in answer["detail"]
    assert _held(hub, device) == {}
    done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: the hub refused this device (403")
    assert len(done.stderr.strip().splitlines()) == 1
    shown = run_cli("sync", "--status", "-p", str(profile)).stdout
    assert "pending 3  sent 0  failed 0" in shown and "revoked" in shown
    fresh = hub_cli("add-device", device, "--replace", "--db", hub.db).stdout.strip()
    assert post(hub.url, token, uploads)[0] == 401  # the old token is gone for good
    assert post(hub.url, fresh, uploads)[0] == 200
    assert len(_held(hub, device)) == 3


def test_an_invalid_payload_gets_422_writes_nothing_and_the_device_keeps_it(hub, tmp_path):
    device, token, data, profile = _enrol(hub, tmp_path, 3, batch_size=10)
    _, body, _ = next(iter(device_rows(data).values()))
    bad = json.loads(body)
    bad_key = uuid.uuid4().hex
    bad["key"] = bad["summary"]["session_id"] = bad_key
    bad["summary"]["totals"]["RBC"] += 1  # totals no longer add up
    bad_body = canonical_json(bad)
    bad_sha = hashlib.sha256(bad_body).hexdigest()
    store = Store.open(data)  # a payload corrupted on the device, queued like any other
    store.conn.execute("INSERT INTO outbox (payload_key, version, sha256, body, created_at)"
                       " VALUES (?, 1, ?, ?, 'now')", (bad_key, bad_sha, bad_body))
    status, answer = post(hub.url, token, _uploads(data))
    assert status == 422 and [r["key"] for r in answer["rejected"]] == [bad_key]
    assert "totals" in answer["rejected"][0]["error"]
    assert _held(hub, device) == {}
    done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 2
    assert "error: 1 payloads rejected by the hub, kept here" in done.stderr
    assert f"rejected session {bad_key[:12]} v1: hub rejected: " in done.stderr
    rows = device_rows(data)
    assert rows[(bad_key, 1)][2] == "failed" and len(_held(hub, device)) == 3
    assert (bad_key, 1) not in _held(hub, device)
    shown = run_cli("sync", "--status", "-p", str(profile)).stdout
    assert "pending 0  sent 3  failed 1" in shown and "totals" in shown
    again = run_cli("sync", "--retry-failed", "-p", str(profile))  # the hub still says no
    assert "1 failed payloads queued again" in again.stderr and again.returncode == 2
    assert device_rows(data)[(bad_key, 1)][2] == "failed" and len(_held(hub, device)) == 3


def test_a_malformed_request_gets_422_and_writes_nothing(hub, tmp_path):
    device, token, data, _ = _enrol(hub, tmp_path, 2)
    uploads = _uploads(data)
    uploads[1]["sha256"] = "not-hex"
    status, answer = post(hub.url, token, uploads)
    assert status == 422 and "upload envelope" in answer["detail"]
    assert post(hub.url, token, [])[0] == 422
    assert _held(hub, device) == {}


def test_concurrent_duplicate_uploads_store_each_version_once(hub, tmp_path):
    device, token, data, _ = _enrol(hub, tmp_path, 10)
    uploads = _uploads(data)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(hub.url, token, uploads), range(8)))
    assert [status for status, _ in answers] == [200] * 8
    for i in range(10):
        assert sorted(a["results"][i]["status"] for _, a in answers) == \
            ["duplicate"] * 7 + ["stored"]
    assert len(_held(hub, device)) == 10


def test_a_reviewed_session_reaches_the_hub_as_its_next_version(hub, tmp_path):
    from tests.helpers.review import make_review_session

    device = f"dev-{uuid.uuid4().hex[:8]}"
    token = hub.add_device(device)
    data = tmp_path / device
    sid = make_review_session(data)
    profile = device_profile(tmp_path, data, hub.url, token)
    assert run_cli("sync", "-p", str(profile)).returncode == 0
    csv = tmp_path / "review.csv"
    csv.write_text("field,cell,label\n0,0,neutrophil\n0,2,monocyte\n")
    imported = run_cli("review", "import", sid[:8], str(csv), "--reviewer", "amina",
                       "-p", str(profile))
    assert imported.returncode == 0, imported.stderr
    done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 0, done.stderr
    assert "1 stored, 0 already at the hub, 0 rejected, 0 pending" in done.stdout
    held = _held(hub, device)
    assert sorted(held) == [(sid, 1), (sid, 2)]
    first, second = (json.loads(held[(sid, v)][1]) for v in (1, 2))
    assert first["summary"]["review"] is None and "reviews" not in first
    assert [(c["field"], c["cell"], c["label"], c["reviewer"]) for c in
            second["reviews"]["cells"]] == [(0, 0, "neutrophil", "amina"),
                                            (0, 2, "monocyte", "amina")]
    assert second["summary"]["review"]["changed"] == 1
    assert second["fields"] == first["fields"]  # the model's output, unchanged beside it
