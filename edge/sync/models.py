"""The sync wire format, typed: what the device sends and the hub validates, one definition.

`SessionPayload` is one session as canonical JSON (`canonical_json`): its summary, every field
with its cells, the digests of every model involved, evidence within a size cap. The device
builds it (`edge.sync.payload`), the hub checks it whole (`hub.payloads`). The summary part
tolerates extra keys, so a device whose report grew a field still syncs to an older hub.
"""

from __future__ import annotations

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
    field_validator,
    model_validator,
)

from edge.core.labels import FieldStatus, SessionStatus

PAYLOAD_SCHEMA = "hemascope.session.v1"


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a payload: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


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
    status: FieldStatus
    reason: str | None
    counts: dict[str, NonNegativeInt] | None


class RejectedField(_Open):
    idx: NonNegativeInt
    reason: str
    reviewer: str | None
    at: str


class ReviewSummary(_Open):
    """The figures of `summary["review"]` the hub checks against the review rows."""

    reviewed_cells: NonNegativeInt
    changed: NonNegativeInt
    rejected_fields: list[RejectedField]


class Summary(_Open):
    session_id: Key
    sample_id: str
    status: SessionStatus
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
    review: ReviewSummary | None = None

    @field_validator("status")
    @classmethod
    def _ended(cls, status: SessionStatus) -> SessionStatus:
        if status is SessionStatus.RUNNING:
            raise ValueError("a running session is not synced (finished or interrupted only)")
        return status


class FieldDetail(_Strict):
    idx: NonNegativeInt
    captured_at: str
    width: PositiveInt | None
    height: PositiveInt | None
    model_sha256: Sha256
    cells: list[tuple[str, Score, float, float, float, float]]
    labels: list[tuple[NonNegativeInt, str, Score]] = []  # WBC differential: cell index, class
    timings_ms: dict[str, float | None]


class CellVerdict(_Strict):
    """A person's newest label for one classified cell (`cell`: its index in the field)."""

    field: NonNegativeInt
    cell: NonNegativeInt
    label: str
    reviewer: str | None
    at: str
    origin: str


class FieldVerdict(_Strict):
    """A person's newest verdict on a field: rejected with a reason, or restored."""

    field: NonNegativeInt
    rejected: bool
    reason: str | None
    reviewer: str | None
    at: str
    origin: str


class Reviews(_Strict):
    """The corrections stored beside the model's output, carried by a newer payload version."""

    cells: list[CellVerdict]
    fields: list[FieldVerdict]


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
    reviews: Reviews | None = None  # absent until someone reviews the session

    @model_validator(mode="after")
    def _consistent(self) -> SessionPayload:
        s = self.summary
        if s.session_id != self.key:
            raise ValueError("summary.session_id differs from the payload key")
        counted = [f for f in s.fields if f.status is FieldStatus.COUNTED]
        by_status = Counter(f.status for f in s.fields)
        if (s.fields_counted, s.fields_rejected, s.fields_skipped) != (
                by_status[FieldStatus.COUNTED], by_status[FieldStatus.REJECTED],
                by_status[FieldStatus.SKIPPED]):
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
        self._check_reviews(details)
        return self

    def _check_reviews(self, details: dict[int, FieldDetail]) -> None:
        """Every verdict names a classified cell or a stored field, and the summary's review
        figures are those of the verdicts: a payload cannot claim a review it does not carry."""
        claimed = self.summary.review
        if self.reviews is None:
            if claimed is not None:
                raise ValueError("summary.review without the reviews it summarises")
            return
        if claimed is None:
            raise ValueError("reviews without summary.review")
        labels = {(d.idx, i): label for d in self.fields for i, label, _ in d.labels}
        for v in self.reviews.cells:
            if (v.field, v.cell) not in labels:
                raise ValueError(f"a review names field {v.field} cell {v.cell}, which is no "
                                 "classified cell")
        if any(v.field not in details for v in self.reviews.fields):
            raise ValueError("a field review names a field the payload does not carry")
        changed = sum(labels[v.field, v.cell] != v.label for v in self.reviews.cells)
        rejected = sorted(v.field for v in self.reviews.fields if v.rejected)
        if (claimed.reviewed_cells, claimed.changed) != (len(self.reviews.cells), changed) or \
                sorted(f.idx for f in claimed.rejected_fields) != rejected:
            raise ValueError("summary.review disagrees with the reviews it summarises")
