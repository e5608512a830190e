"""Records: what is stored for one field, as the pipeline hands it to the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.core.labels import FieldStatus

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
