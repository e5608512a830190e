"""Issue #20, finding 3: nothing the hub holds is read without a read token, on every route.

The routes are taken from the app itself, so a route added later is tested too. Runs against
a real hub process on SQLite and on a real PostgreSQL server (the `hub` fixture).
"""

import base64
import re
import uuid

from fastapi.routing import APIRoute
from starlette.routing import Route

from hub.app import OPEN, create_app
from hub.db import HubDB
from tests.helpers.browser import chromium_page
from tests.helpers.sync import as_upload, device_rows, get, hub_cli, make_sessions, post

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "no-referrer", "cache-control": "no-store"}


def _routes(tmp_path) -> list[tuple[str, str]]:
    """(method, path template) of every route the hub serves."""
    app = create_app(HubDB(str(tmp_path / "routes.db")))
    return [(method, route.path) for route in app.routes
            if isinstance(route, APIRoute | Route) for method in sorted(route.methods or ())]


def _stored_session(hub, tmp_path) -> tuple[str, str, str, int, bytes]:
    """A device with one session at the hub: (device, its token, key, version, body)."""
    device = f"dev-{uuid.uuid4().hex[:8]}"
    token = hub.add_device(device)
    make_sessions(tmp_path / device, 1, seed=3)
    [((key, version), (sha, body, _))] = device_rows(tmp_path / device).items()
    assert post(hub.url, token, [as_upload(key, version, sha, body)])[0] == 200
    return device, token, key, version, body


def _headers_secure(headers: dict[str, str]) -> bool:
    return all(headers.get(k) == v for k, v in SECURITY.items()) and \
        "default-src 'none'" in headers.get("content-security-policy", "")


def test_every_route_but_health_and_upload_needs_a_read_token(hub, tmp_path):
    device, device_token, key, version, body = _stored_session(hub, tmp_path)
    sample = re.search(rb'"sample_id":"([^"]+)"', body).group(1)
    params = {"device_id": device, "key": key, "version": str(version)}
    base = hub.url.removesuffix("/api")
    routes = _routes(tmp_path)
    reads = [(m, p) for m, p in routes if (m, p) not in OPEN]
    assert {("GET", "/openapi.json"), ("GET", "/api/v1/devices/{device_id}/sessions/{key}/"
                                      "{version}"), ("GET", "/")} <= set(reads)
    assert set(routes) - set(reads) == OPEN  # both open routes exist, nothing else is open
    wrong = f"read.tests.{'x' * 43}"
    revoked = hub.add_reader(f"gone-{uuid.uuid4().hex[:6]}")
    assert hub_cli("revoke-reader", revoked.split(".")[1], "--db", hub.db).returncode == 0
    for method, template in [*reads, ("GET", "/no/such/page"), ("DELETE", "/api/v1/devices")]:
        url = base + template.format(**params)
        for token in (None, device_token, wrong, revoked, "garbage"):
            status, answer, headers = get(url, token, method)
            assert status in (401, 403), (method, template, token, status)
            assert sample not in answer and key.encode() not in answer and body[:40] not in answer
            assert _headers_secure(headers), (template, headers)
        status, answer, headers = get(url, hub.reader, method)
        if method == "GET" and "no/such" not in template:
            assert status == 200 and _headers_secure(headers), (template, status)
    assert get(f"{base}/api/v1/devices/{device}/sessions/{key}/{version}", hub.reader)[1] == body
    status, health, headers = get(f"{base}/api/v1/health")
    assert status == 200 and b"ok" in health and _headers_secure(headers)
    # a read token cannot upload, a device token cannot read
    assert post(hub.url, hub.reader, [as_upload(key, version, "0" * 64, body)])[0] == 401
    status, _, headers = get(f"{base}/devices/{device}")  # a browser is asked to sign in
    assert status == 401 and "Basic" in headers["www-authenticate"]


def test_a_reader_signs_in_from_a_browser_and_the_page_obeys_its_policy(hub, tmp_path):
    device, _, _, _, body = _stored_session(hub, tmp_path)
    sample = re.search(r'"sample_id":"([^"]+)"', body.decode()).group(1)
    url = hub.url.removesuffix("/api") + f"/devices/{device}"
    with chromium_page(http_credentials={"username": "lab", "password": hub.reader}) as seen:
        answer = seen.page.goto(url)
        assert answer.status == 200 and sample in seen.page.inner_text("table")
        assert seen.page.eval_on_selector("td", "e => getComputedStyle(e).paddingLeft") != "0px"
        assert seen.errors == []  # the style passes the Content-Security-Policy
        link = seen.page.get_attribute("td a", "href")
        assert seen.page.goto(hub.url.removesuffix("/api") + link).body() == body


def test_read_tokens_are_given_replaced_and_revoked_from_the_command_line(hub):
    name = f"lab-{uuid.uuid4().hex[:6]}"
    first = hub.add_reader(name)
    assert re.fullmatch(rf"read\.{name}\.[A-Za-z0-9_-]{{43}}", first)
    devices = f"{hub.url}/v1/devices"
    assert get(devices, first)[0] == 200
    again = hub_cli("add-reader", name, "--db", hub.db)
    assert again.returncode == 2 and "--replace" in again.stderr
    second = hub_cli("add-reader", name, "--replace", "--db", hub.db).stdout.strip()
    assert get(devices, first)[0] == 401 and get(devices, second)[0] == 200
    basic = base64.b64encode(f"anyone:{second}".encode()).decode()
    assert get(devices, None)[0] == 401
    assert get(devices, authorization=f"Basic {basic}")[0] == 200
    assert hub_cli("revoke-reader", name, "--db", hub.db).returncode == 0
    status, answer, _ = get(devices, second)
    assert status == 403 and b"revoked" in answer
    bad = hub_cli("add-reader", "no good", "--db", hub.db)
    assert bad.returncode == 2 and "not allowed" in bad.stderr
