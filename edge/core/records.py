"""Records: what the pipeline hands the store for a field, and what the store returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.core.labels import FieldStatus, SessionStatus

if TYPE_CHECKING:  # a type only: the store and sync stay free of numpy
    from edge.core.detections import Detections


@dataclass(frozen=True)
class FieldRecord:
    """Everything stored for one field of view."""

    idx: int
    origin: str
    captured_at: str
    status: FieldStatus
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    detections: Detections | None = None
    evidence_path: str | None = None
    timings_ms: dict[str, float] | None = None
    qc: dict[str, float] | None = None  # quality-control scores
    # second stage: {cell row: (differential class, score, crop file)} and ALL probabilities
    cell_labels: dict[int, tuple[str, float, str | None]] | None = None
    subtype: dict[str, float] | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A stored session, as the store returns it."""

    id: str
    sample_id: str
    operator: str | None
    profile_name: str
    profile: dict[str, Any]  # the profile the session ran with
    source: str
    model_file: str
    model_sha256: str  # the detector file's sha256
    model_digest: str | None  # over the detector and its manifest; None: recorded before digests
    classes: list[str]
    classifiers: list[dict[str, Any]]  # role, file, sha256, digest, classes of each classifier
    hemascope_version: str
    started_at: str
    ended_at: str | None
    status: SessionStatus
    fields_by_status: dict[FieldStatus, int] | None = None  # from `Store.sessions` only


@dataclass(frozen=True)
class StoredField:
    """A stored field of view, as the store returns it."""

    id: int
    idx: int
    origin: str
    captured_at: str
    status: FieldStatus
    reason: str | None
    qc: dict[str, float] | None
    width: int | None
    height: int | None
    model_sha256: str
    evidence_path: str | None
    timings_ms: dict[str, float | None]  # decode, preprocess, infer, postprocess, classify
    subtype: dict[str, float] | None  # ALL subtype probabilities


@dataclass(frozen=True)
class StoredCell:
    """A stored detected cell, with its differential class when it was classified."""

    class_name: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in field pixels
    label: str | None
    label_score: float | None
    crop_path: str | None


@dataclass(frozen=True)
class ClassifiedCell:
    """A white cell the differential classified, by its place in the session."""

    field_idx: int
    cell: int  # its detection number in the field: the KKK of NNNNN-cellKKK.png
    label: str
    label_score: float
    crop_path: str | None


@dataclass(frozen=True)
class Review:
    """A person's verdict on one cell, kept beside the model's output."""

    field_idx: int
    cell: int
    label: str
    reviewer: str | None
    reviewed_at: str
    origin: str  # where it came from, e.g. "csv review.csv sha256 ..."


@dataclass(frozen=True)
class StainCheck:
    """How unlike the training smears a session's stain was (`edge.inference.stain`)."""

    cells: int  # white cells it was measured on
    distance: float  # the stain shift in class-mean spreads
    reference_distance: float | None  # the largest the training labs' own sessions reach
    unfamiliar: bool  # distance beyond the reference
    checked_at: str


@dataclass(frozen=True)
class FieldReview:
    """A person's verdict on a whole field, kept beside the model's and quality control's."""

    field_idx: int
    rejected: bool  # False: a field rejected earlier was restored
    reason: str | None
    reviewer: str | None
    reviewed_at: str
    origin: str  # e.g. "review page"
