"""The hub's HTTP API: authenticated idempotent uploads; listings, payloads and pages for readers.

Every request but the health check and device uploads needs a read token (`hub.auth`), even
to a path that does not exist, so a route added later cannot be left open by mistake; every
answer carries the security headers.

POST /api/v1/payloads answers 401 (missing, malformed or wrong device token), 403 (revoked
device), 413 (request over the size limit, from Content-Length or while it streams in), 503
with Retry-After (as many uploads as allowed are in progress), 422 (envelope or any payload
invalid: nothing is stored) or 200 with one result per payload: stored, duplicate (already
held, same bytes) or conflict (held with other bytes). Checks all happen before the one
write transaction. Memory per upload is a small multiple of its size (`hub.payloads`), and
at most `max_uploads` are read and checked at once.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge import __version__
from edge.sync.models import MAX_INT
from hub.auth import authenticate_device, authenticate_reader, refusal
from hub.db import Device, HubDB
from hub.payloads import Rejected, parse_batch, validate

UPLOAD = ("POST", "/api/v1/payloads")
OPEN = {("GET", "/api/v1/health"), UPLOAD}  # every other request needs a read token
RETRY_AFTER_S = 5
_STYLE = ("body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;"
          "border-bottom:1px solid #ddd;text-align:left}")
_STYLE_SHA = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": f"default-src 'none'; style-src 'sha256-{_STYLE_SHA}'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Limits:
    """How much one upload may be, and how many are read and checked at once."""

    max_request_bytes: int = 64 * 2**20
    max_uploads: int = 2


class _Slots:
    """Uploads in progress, at most `limit` (all on the event loop's thread: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give(self) -> None:
        self.used -= 1


class Guard:
    """Refuse every request outside `OPEN` that has no valid read token; add the security
    headers to every answer."""

    def __init__(self, app: ASGIApp, db: HubDB) -> None:
        self.app, self.db = app, db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                    if k.encode() not in names)]
            await send(message)

        if (scope["method"], scope["path"]) not in OPEN:
            refused = await run_in_threadpool(
                authenticate_reader, self.db, Headers(scope=scope).get("authorization"))
            if refused is not None:
                await refused(scope, receive, send_secured)
                return
        await self.app(scope, receive, send_secured)


def _accept(db: HubDB, device: Device, raw: bytearray) -> JSONResponse:
    try:
        batch = parse_batch(raw)
    except Rejected as exc:
        return refusal(422, str(exc), rejected=[])
    raw.clear()  # the request bytes live on only as the payload bodies
    incoming, rejected = [], []
    for p in batch.payloads:
        try:
            incoming.append(validate(p.key, p.version, p.sha256, p.body.encode()))
        except Rejected as exc:
            rejected.append({"key": p.key, "version": p.version, "error": str(exc)})
        p.body = ""
    if rejected:
        return refusal(422, f"{len(rejected)} of {len(batch.payloads)} payloads failed "
                       "validation; nothing was stored", rejected=rejected)
    return JSONResponse({"device_id": device.id, "results": db.store(device.id, incoming, "http")})


async def _read_body(request: Request, limit: int) -> bytearray | None:
    """The request body, or None once it grows past `limit` bytes."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return raw


async def _drain(request: Request, limit: int) -> None:
    """Read and drop a body (up to `limit` bytes), so the client hears the answer."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            return


def _page(title: str, head: list[str], rows: list[list[str]]) -> HTMLResponse:
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + f"</tr>{cells}</table><p>hemascope hub {__version__}, read-only</p></body></html>")


def create_app(db: HubDB, limits: Limits = Limits()) -> FastAPI:
    app = FastAPI(title="hemascope hub", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    slots = _Slots(limits.max_uploads)
    too_large = f"request larger than {limits.max_request_bytes / 2**20:g} MB"

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "uploads": slots.used, "max_uploads": slots.limit}

    @app.post("/api/v1/payloads")
    async def upload(request: Request) -> Response:
        device = await run_in_threadpool(authenticate_device, db,
                                         request.headers.get("authorization"))
        if isinstance(device, JSONResponse):
            return device
        if int(request.headers.get("content-length") or 0) > limits.max_request_bytes:
            return refusal(413, too_large)
        if not slots.take():
            await _drain(request, limits.max_request_bytes)
            return JSONResponse(
                {"detail": f"{slots.limit} uploads in progress; try again shortly"}, 503,
                headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            raw = await _read_body(request, limits.max_request_bytes)
            if raw is None:
                return refusal(413, too_large)
            return await run_in_threadpool(_accept, db, device, raw)
        finally:
            slots.give()

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/v1/devices")
    def devices() -> list[dict[str, Any]]:
        return db.devices()

    @app.get("/api/v1/devices/{device_id}/sessions")
    def sessions(device_id: str) -> list[dict[str, Any]]:
        return db.sessions(device_id)

    @app.get("/api/v1/devices/{device_id}/sessions/{key}/{version}")
    def payload(device_id: str, key: str,
                version: Annotated[int, Path(ge=1, le=MAX_INT)]) -> Response:
        body = db.body(device_id, key, version)
        if body is None:
            return refusal(404, "no such payload version")
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

    app.add_middleware(Guard, db=db)
    return app

