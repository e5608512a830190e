"""Issue #20, finding 10, over HTTP: a device with a valid token cannot make the hub take
unbounded memory or answer 500. A real hub process with small limits (256 KB per request,
one upload at a time), on SQLite and on a real PostgreSQL server; no timing assertions.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from edge.sync.models import canonical_json
from tests.helpers.golden import FIXTURES
from tests.helpers.sync import Hub, as_upload, get, hub_db, large_payload, post

LIMIT = 256 * 1024


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def small_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("small-hub")
    running = Hub(hub_db(request, request.param, folder), folder,
                  serve_args=["--max-request-mb", str(LIMIT / 2**20), "--max-uploads", "1"]
                  ).start()
    running.reader = running.add_reader("tests")
    yield running
    running.stop()


def _payload(target: int) -> tuple[str, bytes]:
    """A valid payload of about `target` bytes, under a fresh session key."""
    key = uuid.uuid4().hex
    golden = json.loads((FIXTURES / "payload-v1.json").read_bytes())
    return key, large_payload(golden, key, target, cells_per_field=40)


def _envelope(key: str, body: bytes, version: int = 1) -> bytes:
    sha = hashlib.sha256(body).hexdigest()
    return json.dumps({"payloads": [as_upload(key, version, sha, body)]}).encode()


def _send(hub: Hub, token: str, data: bytes | Iterator[bytes]) -> tuple[int, dict, dict]:
    """POST an upload (an iterator of chunks goes chunked, with no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        conn.request("POST", "/api/v1/payloads", body=data, headers=headers,
                     encode_chunked=not isinstance(data, bytes))
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), dict(resp.headers)
    finally:
        conn.close()


def _held(hub: Hub, device: str) -> set[str]:
    return {k for (d, k, _), _ in hub.rows().items() if d == device}


def _enrol(hub: Hub) -> tuple[str, str]:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    return device, hub.add_device(device)


def test_a_request_over_the_size_limit_is_refused_413_declared_or_streamed(small_hub):
    device, token = _enrol(small_hub)
    key, body = _payload(LIMIT + 40_000)
    envelope = _envelope(key, body)
    assert len(envelope) > LIMIT
    status, answer, _ = _send(small_hub, token, envelope)  # Content-Length says it all
    assert status == 413 and "larger than 0.25 MB" in answer["detail"]
    chunks = (envelope[i:i + 16384] for i in range(0, len(envelope), 16384))
    status, answer, _ = _send(small_hub, token, chunks)  # no Content-Length: counted as read
    assert status == 413
    assert _held(small_hub, device) == set()
    key, body = _payload(LIMIT // 2)  # under the limit, streamed: stored
    envelope = _envelope(key, body)
    chunks = (envelope[i:i + 16384] for i in range(0, len(envelope), 16384))
    assert _send(small_hub, token, chunks)[0] == 200
    assert _held(small_hub, device) == {key}


def _wait_for_uploads(hub: Hub, n: int) -> None:
    """Until the hub reports n uploads in progress (bounded wait, no timing asserted)."""
    deadline = time.monotonic() + 60
    while json.loads(get(f"{hub.url}/v1/health")[1])["uploads"] != n:
        assert time.monotonic() < deadline, f"the hub never had {n} uploads in progress"
        time.sleep(0.05)


def test_an_upload_beyond_the_concurrency_limit_gets_503_and_retry_after(small_hub):
    device, token = _enrol(small_hub)
    first_key, first_body = _payload(LIMIT // 2)
    first = _envelope(first_key, first_body)
    slow = socket.create_connection(("127.0.0.1", small_hub.port), timeout=60)
    try:  # the first upload sends its headers and half its body, then pauses
        slow.sendall(b"POST /api/v1/payloads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(first)).encode() + b"\r\n\r\n"
                     + first[:len(first) // 2])
        _wait_for_uploads(small_hub, 1)
        second_key, second_body = _payload(LIMIT // 4)
        second = _envelope(second_key, second_body)
        status, answer, headers = _send(small_hub, token, second)
        assert status == 503 and int(headers["retry-after"]) > 0
        assert "uploads in progress" in answer["detail"]
        slow.sendall(first[len(first) // 2:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            part = slow.recv(65536)
            assert part, reply
            reply += part
    finally:
        slow.close()
    assert reply.startswith(b"HTTP/1.1 200") and b'"stored"' in reply
    _wait_for_uploads(small_hub, 0)
    assert _send(small_hub, token, second)[0] == 200  # its turn came
    assert _held(small_hub, device) == {first_key, second_key}


def _int_paths(obj: Any, where: tuple = ()) -> Iterator[tuple]:
    """The path of every integer in a JSON object."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        yield where
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _int_paths(v, (*where, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _int_paths(v, (*where, i))


# every integer the wire models type (the rest are free extras of the summary)
TYPED = re.compile(r"version|evidence\.max_kb|summary\.fields_(counted|rejected|skipped)"
                   r"|summary\.totals\.\w+|summary\.fields\.\d+\.(idx|counts\.\w+)"
                   r"|fields\.\d+\.(idx|width|height|labels\.\d+\.0)")


def test_every_integer_out_of_range_gets_422_not_500_and_stores_nothing(small_hub):
    device, token = _enrol(small_hub)
    golden = json.loads((FIXTURES / "payload-v1.json").read_bytes())
    paths = list(_int_paths(golden))
    typed = [p for p in paths if TYPED.fullmatch(".".join(map(str, p)))]
    assert len(typed) > 25 and ("version",) in typed and ("evidence", "max_kb") in typed
    refused: set[str] = set()
    for path in paths:
        for value in (2**63, 2**31, -1):
            payload = json.loads(json.dumps(golden))
            key = payload["key"] = payload["summary"]["session_id"] = uuid.uuid4().hex
            parent = payload
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = value
            body = canonical_json(payload)
            status, answer = post(small_hub.url, token, [as_upload(
                key, payload["version"], hashlib.sha256(body).hexdigest(), body)])
            assert status in (200, 422), (path, value, status, answer)  # never a 500
            if path in typed:
                assert status == 422, (path, value, answer)
                refused.add(key)
    assert not refused & _held(small_hub, device)
    sha = hashlib.sha256(b"{}").hexdigest()
    status, answer = post(small_hub.url, token, [{"key": "k", "version": 2**63, "sha256": sha,
                                                  "body": "{}"}])
    assert status == 422 and "version" in answer["detail"]
    url = f"{small_hub.url}/v1/devices/{device}/sessions/k/{2**63}"
    assert get(url, small_hub.reader)[0] == 422
