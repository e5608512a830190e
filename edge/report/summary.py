"""Session summaries: what a session counted, with which model, from the store alone."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from edge.clinical.differential import differential as clinical_differential
from edge.core.labels import NOT_WHITE_CELLS, FieldStatus
from edge.core.records import StainCheck
from edge.report.review import review_summary
from edge.storage.store import TIMED_STEPS, Store

REVIEW_BELOW = 0.6  # a differential class scored below this is flagged for review
UNRELIABLE_SHARE = 0.2  # flagged share above which the differential is called unreliable


def differential(cells: list[tuple[str, float]], classes: list[str]) -> dict[str, Any] | None:
    """Counts and % per class with a 95 % interval for every white-cell class of the model
    (`edge.clinical`: exact Clopper-Pearson for small counts, Wilson otherwise; a class seen
    0 times still has one), and the cells to review: the classifier unsure, or calling a
    detected white cell a platelet (the two models disagree: often an unfamiliar stain)."""
    if not cells:
        return None
    counts = dict(sorted(Counter(label for label, _ in cells).items()))
    review = sum(score < REVIEW_BELOW or label in NOT_WHITE_CELLS for label, score in cells)
    white = {c: counts.get(c, 0) for c in classes if c not in NOT_WHITE_CELLS}
    shares = clinical_differential(white).to_dict() if sum(white.values()) else None
    return {"classified": len(cells), "counts": counts,
            "percent": {k: round(100 * n / len(cells), 1) for k, n in counts.items()},
            "review": review, "reliable": review <= UNRELIABLE_SHARE * len(cells),
            "interval_95": {k: [v["low"], v["high"]] for k, v in shares["classes"].items()}
            if shares else None,
            "insufficient": shares["insufficient"] if shares else True}


def stain(check: StainCheck | None) -> dict[str, Any] | None:
    """How unlike the training smears the session's stain was (`edge.pipeline.stain_check`)."""
    if check is None:
        return None
    return {"cells": check.cells, "distance": check.distance,
            "reference_distance": check.reference_distance, "unfamiliar": check.unfamiliar}


def session_summary(store: Store, session_id: str) -> dict[str, Any]:
    """A JSON-ready summary: session metadata, per-class totals, per-field counts, timings."""
    s = store.session(session_id)
    classes = s.classes
    fields = store.fields(s.id)
    per_field = store.field_counts(s.id)
    totals = store.totals(s.id)
    counted = [f for f in fields if f.status is FieldStatus.COUNTED]
    subtypes = [f.subtype for f in counted if f.subtype]
    wbc_classes = next((m.get("classes", []) for m in s.classifiers if m.get("role") == "wbc"),
                       [])

    def median(key: str) -> float | None:
        values = [f.timings_ms[key] for f in counted if f.timings_ms[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "session_id": s.id,
        "sample_id": s.sample_id,
        "operator": s.operator,
        "profile": s.profile_name,
        "source": s.source,
        "status": s.status,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "hemascope_version": s.hemascope_version,
        "model": {"file": s.model_file, "sha256": s.model_sha256},
        "classes": classes,
        "classifiers": s.classifiers,
        "differential": differential(store.differential(s.id), wbc_classes),
        "stain": stain(store.stain_check(s.id)),
        "review": review_summary(store, s, wbc_classes,
                                 lambda cells: differential(cells, wbc_classes)),
        "all_subtype": {
            "fields": len(subtypes),
            "mean_probability": {k: round(statistics.fmean(p[k] for p in subtypes), 4)
                                 for k in subtypes[0]},
        } if subtypes else None,
        "fields_counted": len(counted),
        "fields_rejected": sum(f.status is FieldStatus.REJECTED for f in fields),
        "fields_skipped": sum(f.status is FieldStatus.SKIPPED for f in fields),
        "totals": {c: int(totals.get(c, 0)) for c in classes},
        "mean_per_field": {c: round(totals.get(c, 0) / len(counted), 3) if counted else None
                           for c in classes},
        "telemetry": store.telemetry(s.id),
        "median_ms": {k: median(k) for k in TIMED_STEPS},
        "fields": [
            {"idx": f.idx, "origin": f.origin, "status": f.status, "reason": f.reason,
             "counts": per_field.get(f.idx), "qc": f.qc, "all_subtype": f.subtype,
             "evidence": f.evidence_path}
            for f in fields
        ],
    }


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
