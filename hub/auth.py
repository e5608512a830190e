"""Who may do what at the hub: devices upload, readers read, and nobody else sees anything.

A device token (`DEVICE.SECRET`, `hemascope-hub add-device`) only uploads its own payloads. A
read token (`read.NAME.SECRET`, `hemascope-hub add-reader`) only reads: the listings, the
payloads, the pages and the API description. Each kind is refused where the other is
expected. Programs send `Authorization: Bearer TOKEN`; a browser signs in with HTTP Basic,
the read token as the password (any user name). The hub keeps only the tokens' sha256.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from fastapi.responses import JSONResponse

from edge.sync.client import TOKEN_RE
from hub.db import Device, HubDB

READ_TOKEN_RE = re.compile(r"^read\.([A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]{32,256}$")
REALM = 'realm="hemascope hub"'


def refusal(status: int, detail: str, basic: bool = False, **extra: Any) -> JSONResponse:
    """A JSON error answer; a 401 says how to sign in: a bearer token, or also HTTP Basic
    (where a browser may read)."""
    answer = JSONResponse({"detail": detail, **extra}, status_code=status)
    if status == 401:
        answer.headers.append("WWW-Authenticate", f"Bearer {REALM}")
        if basic:
            answer.headers.append("WWW-Authenticate", f'Basic {REALM}, charset="UTF-8"')
    return answer


def _presented(authorization: str | None) -> str | None:
    """The token of a Bearer header, or the password of a Basic one."""
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def authenticate_device(db: HubDB, authorization: str | None) -> Device | JSONResponse:
    """The device a bearer token belongs to, or the 401/403 answer."""
    scheme, _, token = (authorization or "").partition(" ")
    match = TOKEN_RE.match(token.strip())
    if scheme.lower() != "bearer" or match is None:
        return refusal(401, "missing or malformed device token")
    device = db.device(match.group(1))
    if device is None or not device.token_matches(token.strip()):
        return refusal(401, "unknown device or wrong token")
    if device.revoked_at is not None:
        return refusal(403, f"device {device.id} was revoked at {device.revoked_at}")
    return device


def authenticate_reader(db: HubDB, authorization: str | None) -> JSONResponse | None:
    """None if the request carries a valid read token, else the 401/403 answer."""
    token = _presented(authorization)
    match = READ_TOKEN_RE.match(token or "")
    if match is None:
        return refusal(401, "a read token is needed (hemascope-hub add-reader NAME)", True)
    reader = db.reader(match.group(1))
    if reader is None or not reader.token_matches(token or ""):
        return refusal(401, "unknown reader or wrong token", True)
    if reader.revoked_at is not None:
        return refusal(403, f"reader {reader.id} was revoked at {reader.revoked_at}")
    return None
