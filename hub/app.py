"""The hub's HTTP API: authenticated idempotent uploads, read-only listings per device.

POST /api/v1/payloads answers 401 (missing, malformed or wrong token), 403 (revoked
device), 413 (request too large), 422 (envelope or any payload invalid: nothing is stored)
or 200 with one result per payload: stored, duplicate (already held, same bytes) or
conflict (held with other bytes). Checks all happen before the one write transaction.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from edge import __version__
from edge.sync.client import TOKEN_RE
from hub.db import Device, HubDB
from hub.payloads import Rejected, parse_batch, validate

MAX_REQUEST_BYTES = 64 * 2**20


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def authenticate(db: HubDB, authorization: str | None) -> Device | JSONResponse:
    """The device a bearer token belongs to, or the 401/403 answer."""
    scheme, _, token = (authorization or "").partition(" ")
    match = TOKEN_RE.match(token.strip())
    if scheme.lower() != "bearer" or match is None:
        return _error(401, "missing or malformed bearer token")
    device = db.device(match.group(1))
    if device is None or not device.token_matches(token.strip()):
        return _error(401, "unknown device or wrong token")
    if device.revoked_at is not None:
        return _error(403, f"device {device.id} was revoked at {device.revoked_at}")
    return device


def _accept(db: HubDB, device: Device, raw: bytes) -> JSONResponse:
    try:
        batch = parse_batch(raw)
    except Rejected as exc:
        return _error(422, str(exc), rejected=[])
    incoming, rejected = [], []
    for p in batch.payloads:
        try:
            incoming.append(validate(p.key, p.version, p.sha256, p.body.encode()))
        except Rejected as exc:
            rejected.append({"key": p.key, "version": p.version, "error": str(exc)})
    if rejected:
        return _error(422, f"{len(rejected)} of {len(batch.payloads)} payloads failed validation;"
                      " nothing was stored", rejected=rejected)
    return JSONResponse({"device_id": device.id, "results": db.store(device.id, incoming, "http")})


def _page(title: str, head: list[str], rows: list[list[str]]) -> HTMLResponse:
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + f"</tr>{cells}</table><p>hemascope hub {__version__}, read-only</p></body></html>")


def create_app(db: HubDB) -> FastAPI:
    app = FastAPI(title="hemascope hub", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/payloads")
    async def upload(request: Request) -> Response:
        device = await run_in_threadpool(authenticate, db, request.headers.get("authorization"))
        if isinstance(device, JSONResponse):
            return device
        if int(request.headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
            return _error(413, f"request larger than {MAX_REQUEST_BYTES // 2**20} MB")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_REQUEST_BYTES:
                return _error(413, f"request larger than {MAX_REQUEST_BYTES // 2**20} MB")
        return await run_in_threadpool(_accept, db, device, bytes(raw))

    @app.get("/api/v1/devices")
    def devices() -> list[dict[str, Any]]:
        return db.devices()

    @app.get("/api/v1/devices/{device_id}/sessions")
    def sessions(device_id: str) -> list[dict[str, Any]]:
        return db.sessions(device_id)

    @app.get("/api/v1/devices/{device_id}/sessions/{key}/{version}")
    def payload(device_id: str, key: str, version: int) -> Response:
        body = db.body(device_id, key, version)
        if body is None:
            return _error(404, "no such payload version")
        return Response(body, media_type="application/json")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        e = html.escape
        return _page("hemascope hub: devices", [
            "device", "sessions", "payload versions", "last received", "revoked"], [
            [f"<a href='/devices/{e(d['id'])}'>{e(d['id'])}</a>", str(d["sessions"]),
             str(d["payloads"]), e(d["last_received"] or "-"), e(d["revoked_at"] or "-")]
            for d in db.devices()])

    @app.get("/devices/{device_id}", response_class=HTMLResponse)
    def device_page(device_id: str) -> HTMLResponse:
        e = html.escape
        return _page(f"sessions from {device_id}", [
            "session", "version", "sample", "status", "started", "fields", "via", "received",
            "sha256"], [
            [f"<a href='/api/v1/devices/{e(device_id)}/sessions/{e(s['session_id'])}/"
             f"{s['version']}'>{e(s['session_id'][:12])}</a>", str(s["version"]),
             e(s["sample_id"] or ""), e(s["status"] or ""), e((s["started_at"] or "")[:19]),
             str(s["fields_counted"]), e(s["via"]), e(s["received_at"][:19]),
             e(s["sha256"][:12])] for s in db.sessions(device_id)])

    return app
