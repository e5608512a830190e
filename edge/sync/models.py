"""The sync wire format, typed: what the device sends and the hub validates, one definition.

`SessionPayload` is one session as canonical JSON (`canonical_json`): its summary, every field
with its cells, the digests of every model involved, evidence within a size cap. The device
builds it (`edge.sync.payload`), the hub checks it (`hub.payloads`): the same models and the
same session rules (`PayloadHead.check`), which the hub applies to `FieldFacts` gathered one
field at a time, so it never holds a large payload's fields at once. The summary part
tolerates extra keys, so a device whose report grew a field still syncs to an older hub.
Every integer has bounds (the hub's database columns are 32-bit).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
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
MAX_INT = 2**31 - 1  # PostgreSQL INTEGER: the hub stores versions and field counts as such
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Version = Annotated[int, Field(ge=1, le=MAX_INT)]
Pixels = Annotated[int, Field(ge=1, le=1_000_000)]  # one side of a field image


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Upload(_Strict):
    key: Key
    version: Version
    sha256: Sha256
    body: str


class UploadBatch(_Strict):
    payloads: list[Upload] = Field(min_length=1, max_length=500)


class ModelRef(_Open):
    file: str
    sha256: Sha256


class FieldSummary(_Open):
    idx: Count
    status: FieldStatus
    reason: str | None
    counts: dict[str, Count] | None


class RejectedField(_Open):
    idx: Count
    reason: str
    reviewer: str | None
    at: str


class ReviewSummary(_Open):
    """The figures of `summary["review"]` the hub checks against the review rows."""

    reviewed_cells: Count
    changed: Count
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
    fields_counted: Count
    fields_rejected: Count
    fields_skipped: Count
    totals: dict[str, Count]
    fields: list[FieldSummary]  # empty while the hub checks the fields one at a time
    review: ReviewSummary | None = None

    @field_validator("status")
    @classmethod
    def _ended(cls, status: SessionStatus) -> SessionStatus:
        if status is SessionStatus.RUNNING:
            raise ValueError("a running session is not synced (finished or interrupted only)")
        return status


class FieldDetail(_Strict):
    idx: Count
    captured_at: str
    width: Pixels | None
    height: Pixels | None
    model_sha256: Sha256
    cells: list[tuple[str, Score, float, float, float, float]]
    labels: list[tuple[Count, str, Score]] = []  # WBC differential: cell index, class, score
    timings_ms: dict[str, float | None]

    @model_validator(mode="after")
    def _labels_point_at_cells(self) -> FieldDetail:
        if any(i >= len(self.cells) for i, _, _ in self.labels):
            raise ValueError("a cell label points past its field's cells")
        return self


class CellVerdict(_Strict):
    """A person's newest label for one classified cell (`cell`: its index in the field)."""

    field: Count
    cell: Count
    label: str
    reviewer: str | None
    at: str
    origin: str


class FieldVerdict(_Strict):
    """A person's newest verdict on a field: rejected with a reason, or restored."""

    field: Count
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
    max_kb: Annotated[int, Field(ge=1, le=MAX_INT)]
    images: dict[str, str]  # empty while the hub checks the images one at a time
    omitted: list[str]


ClassCounts = tuple[tuple[str, int], ...]  # (class, n > 0), sorted


def _class_counts(counts: Iterable[tuple[str, int]]) -> ClassCounts:
    return tuple(sorted((c, n) for c, n in counts if n > 0))


@dataclass
class FieldFacts:
    """What the session rules need from a payload's two per-field lists, gathered one field
    at a time: fields per status, totals and counts of the counted fields (summary), cells
    per class of each field and the models that counted them (details)."""

    by_status: Counter[FieldStatus] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    counted: list[tuple[int, ClassCounts]] = field(default_factory=list)
    cells: dict[int, ClassCounts] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    labels: dict[tuple[int, int], str] = field(default_factory=dict)  # (field, cell): class

    def add_summary(self, f: FieldSummary) -> None:
        self.by_status[f.status] += 1
        if f.status is FieldStatus.COUNTED:
            self.totals.update(f.counts or {})
            self.counted.append((f.idx, _class_counts((f.counts or {}).items())))

    def add_detail(self, d: FieldDetail) -> None:
        self.cells[d.idx] = _class_counts(Counter(c[0] for c in d.cells).items())
        self.models.add(d.model_sha256)
        self.labels.update(((d.idx, i), label) for i, label, _ in d.labels)


class PayloadHead(_Strict):
    """A session payload without its field details (`SessionPayload` adds them)."""

    schema_: Literal["hemascope.session.v1"] = Field(alias="schema")
    key: Key
    version: Version
    summary: Summary
    profile: dict[str, Any]
    model_digests: list[Sha256] = Field(min_length=1)
    evidence: Evidence | None
    reviews: Reviews | None = None  # absent until someone reviews the session

    def check(self, facts: FieldFacts) -> None:
        """The session rules: raise ValueError naming the first one broken."""
        s = self.summary
        if s.session_id != self.key:
            raise ValueError("summary.session_id differs from the payload key")
        if (s.fields_counted, s.fields_rejected, s.fields_skipped) != (
                facts.by_status[FieldStatus.COUNTED], facts.by_status[FieldStatus.REJECTED],
                facts.by_status[FieldStatus.SKIPPED]):
            raise ValueError("fields_counted / _rejected / _skipped disagree with the field list")
        if (any(facts.totals[c] != n for c, n in s.totals.items())
                or set(facts.totals) - set(s.totals)):
            raise ValueError("totals are not the sums of the counted fields")
        for idx, counts in facts.counted:
            if facts.cells.get(idx) != counts:
                raise ValueError(f"field {idx}: cells disagree with its counts")
        digests = set(self.model_digests)
        if s.model.sha256 not in digests or not facts.models <= digests:
            raise ValueError("model_digests does not list every model that counted")
        if any(c.sha256 not in digests for c in s.classifiers):
            raise ValueError("model_digests does not list every classifier")
        self._check_reviews(facts)

    def _check_reviews(self, facts: FieldFacts) -> None:
        """Every verdict names a classified cell or a stored field, and the summary's review
        figures are those of the verdicts: a payload cannot claim a review it does not carry."""
        claimed = self.summary.review
        if self.reviews is None:
            if claimed is not None:
                raise ValueError("summary.review without the reviews it summarises")
            return
        if claimed is None:
            raise ValueError("reviews without summary.review")
        labels = facts.labels
        for v in self.reviews.cells:
            if (v.field, v.cell) not in labels:
                raise ValueError(f"a review names field {v.field} cell {v.cell}, which is no "
                                 "classified cell")
        if any(v.field not in facts.cells for v in self.reviews.fields):
            raise ValueError("a field review names a field the payload does not carry")
        changed = sum(labels[v.field, v.cell] != v.label for v in self.reviews.cells)
        rejected = sorted(v.field for v in self.reviews.fields if v.rejected)
        if (claimed.reviewed_cells, claimed.changed) != (len(self.reviews.cells), changed) or \
                sorted(f.idx for f in claimed.rejected_fields) != rejected:
            raise ValueError("summary.review disagrees with the reviews it summarises")


class SessionPayload(PayloadHead):
    fields: list[FieldDetail]

    @model_validator(mode="after")
    def _consistent(self) -> SessionPayload:
        facts = FieldFacts()
        for f in self.summary.fields:
            facts.add_summary(f)
        for d in self.fields:
            facts.add_detail(d)
        self.check(facts)
        return self
