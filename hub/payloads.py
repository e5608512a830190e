"""What the hub accepts: the upload envelope and the session payload schema, checked whole.

A payload is refused unless its bytes match its sha256, it is canonical JSON, it follows
`hemascope.session.v1`, and its numbers agree with each other (field counts, totals, cells
per class, model digests). The summary part tolerates extra keys, so a device whose report
grew a field still syncs to an older hub.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edge.storage.outbox import PAYLOAD_SCHEMA, canonical_json
from hub.db import Incoming

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Score = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Upload(_Strict):
    key: Key
    version: PositiveInt
    sha256: Sha256
    body: str


class UploadBatch(_Strict):
    payloads: list[Upload] = Field(min_length=1, max_length=500)


class ModelRef(_Open):
    file: str
    sha256: Sha256


class FieldSummary(_Open):
    idx: NonNegativeInt
    status: Literal["counted", "rejected", "skipped"]
    reason: str | None
    counts: dict[str, NonNegativeInt] | None


class Summary(_Open):
    session_id: Key
    sample_id: str
    status: Literal["finished", "interrupted"]
    started_at: str
    ended_at: str | None
    model: ModelRef
    classifiers: list[ModelRef] = []
    classes: list[str]
    fields_counted: NonNegativeInt
    fields_rejected: NonNegativeInt
    fields_skipped: NonNegativeInt
    totals: dict[str, NonNegativeInt]
    fields: list[FieldSummary]


class FieldDetail(_Strict):
    idx: NonNegativeInt
    captured_at: str
    width: PositiveInt | None
    height: PositiveInt | None
    model_sha256: Sha256
    cells: list[tuple[str, Score, float, float, float, float]]
    labels: list[tuple[NonNegativeInt, str, Score]] = []  # WBC differential: cell index, class
    timings_ms: dict[str, float | None]


class Evidence(_Strict):
    max_kb: PositiveInt
    images: dict[str, str]
    omitted: list[str]


class SessionPayload(_Strict):
    schema_: Literal["hemascope.session.v1"] = Field(alias="schema")
    key: Key
    version: PositiveInt
    summary: Summary
    profile: dict[str, Any]
    model_digests: list[Sha256] = Field(min_length=1)
    fields: list[FieldDetail]
    evidence: Evidence | None

    @model_validator(mode="after")
    def _consistent(self) -> SessionPayload:
        s = self.summary
        if s.session_id != self.key:
            raise ValueError("summary.session_id differs from the payload key")
        counted = [f for f in s.fields if f.status == "counted"]
        by_status = Counter(f.status for f in s.fields)
        if (s.fields_counted, s.fields_rejected, s.fields_skipped) != (
                by_status["counted"], by_status["rejected"], by_status["skipped"]):
            raise ValueError("fields_counted / _rejected / _skipped disagree with the field list")
        totals: Counter[str] = Counter()
        for f in counted:
            totals.update(f.counts or {})
        if any(totals[c] != n for c, n in s.totals.items()) or set(totals) - set(s.totals):
            raise ValueError("totals are not the sums of the counted fields")
        details = {d.idx: d for d in self.fields}
        for f in counted:
            cells = Counter(c[0] for c in details[f.idx].cells) if f.idx in details else None
            if cells is None or +cells != +Counter(f.counts or {}):
                raise ValueError(f"field {f.idx}: cells disagree with its counts")
        if any(i >= len(d.cells) for d in self.fields for i, _, _ in d.labels):
            raise ValueError("a cell label points past its field's cells")
        digests = set(self.model_digests)
        if s.model.sha256 not in digests or any(d.model_sha256 not in digests
                                                for d in self.fields):
            raise ValueError("model_digests does not list every model that counted")
        if any(c.sha256 not in digests for c in s.classifiers):
            raise ValueError("model_digests does not list every classifier")
        return self


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
