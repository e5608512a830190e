"""The figures the report documents (HTML, FHIR) read from a session summary, in one shape:
the differential of the model and, when a person reviewed the cells, the reviewed one, and the
count estimates by detector class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.clinical.differential import differential
from edge.core.labels import DETECTOR_CLASSES, NOT_WHITE_CELLS, canonical_class


@dataclass(frozen=True)
class Share:
    """One class of a differential: cells, percent of the classified cells and its 95 %
    interval (percent); percent and interval are None when nothing was classified."""

    label: str
    count: int
    percent: float | None
    low: float | None
    high: float | None


def white_classes(summary: dict[str, Any]) -> list[str]:
    """The white-cell classes of the session's differential model, in the model's order."""
    wbc = next((m for m in summary.get("classifiers", []) if m.get("role") == "wbc"), None)
    return [c for c in (wbc or {}).get("classes", []) if c not in NOT_WHITE_CELLS]


def model_shares(summary: dict[str, Any]) -> list[Share]:
    """The model's differential, every white-cell class (zeros too), most cells first."""
    diff = summary.get("differential")
    if not diff:
        return []
    intervals = diff.get("interval_95") or {}
    labels = white_classes(summary) or list(diff["counts"])
    rows = []
    for label in labels:
        low, high = intervals.get(label, (None, None))
        rows.append(Share(label, int(diff["counts"].get(label, 0)),
                          diff["percent"].get(label, 0.0 if diff["classified"] else None),
                          low, high))
    return sorted(rows, key=lambda s: -s.count)


def reviewed_shares(summary: dict[str, Any]) -> list[Share]:
    """The differential after review (the reviewer's labels, the model's elsewhere), with
    intervals computed as for the model's; empty when the session was not reviewed."""
    review = summary.get("review")
    if not review or not review.get("reviewed_counts"):
        return []
    counts = {label: int(review["reviewed_counts"].get(label, 0))
              for label in white_classes(summary) or review["reviewed_counts"]}
    if not sum(counts.values()):
        return []
    shares = differential(counts).to_dict()["classes"]
    return sorted((Share(label, s["count"], s["percent"], s["low"], s["high"])
                   for label, s in shares.items()), key=lambda s: -s.count)


def estimates_by_class(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """summary["estimates"] keyed by detector class name (WBC, RBC, Platelets) whatever the
    spelling of its keys; keys that name no detector class are kept as they are."""
    out = {}
    for key, value in (summary.get("estimates") or {}).items():
        if not isinstance(value, dict):
            continue
        try:
            out[DETECTOR_CLASSES[canonical_class(key)]] = value
        except ValueError:
            out[key] = value
    return out
