"""What the hub accepts: the upload envelope and the session payload, checked whole.

A payload is refused unless its bytes match its sha256, it is canonical JSON, it follows
`hemascope.session.v1` (the wire models in `edge.sync.models`, which the device builds its
payloads from), and its numbers agree with each other (field counts, totals, cells per
class, model digests).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import ValidationError

from edge.sync.models import PAYLOAD_SCHEMA, SessionPayload, UploadBatch, canonical_json
from hub.db import Incoming


class Rejected(ValueError):
    """Why one payload version is refused."""


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"


def parse_batch(raw: bytes) -> UploadBatch:
    try:
        return UploadBatch.model_validate_json(raw)
    except ValidationError as exc:
        raise Rejected(f"upload envelope: {_first_error(exc)}") from None


def validate(key: str, version: int, sha256: str, body: bytes) -> Incoming:
    """Check one payload version completely; raise Rejected with the reason."""
    if hashlib.sha256(body).hexdigest() != sha256:
        raise Rejected("sha256 does not match the body")
    try:
        obj = json.loads(body)
    except ValueError:
        raise Rejected("body is not JSON") from None
    try:
        canonical = canonical_json(obj)
    except ValueError:
        canonical = b""
    if canonical != body:
        raise Rejected("body is not canonical JSON (sorted keys, no spaces, ASCII)")
    if isinstance(obj, dict) and obj.get("schema") != PAYLOAD_SCHEMA:
        raise Rejected(f"unknown payload schema {obj.get('schema')!r}; this hub reads "
                       f"{PAYLOAD_SCHEMA}")
    try:
        payload = SessionPayload.model_validate(obj)
    except ValidationError as exc:
        raise Rejected(_first_error(exc)) from None
    if (payload.key, payload.version) != (key, version):
        raise Rejected("key or version differ from the payload's own")
    s = payload.summary
    return Incoming(key, version, sha256, body, s.sample_id, s.status, s.started_at,
                    s.fields_counted)
