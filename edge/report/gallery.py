"""The pictures of a report: annotated fields, rejected fields and white-cell crops from the
session's evidence files, as small JPEG thumbnails inlined as data: URIs, so that one HTML
file carries them all and stays a few MB whatever the session's size."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from edge.core.labels import WBC, FieldStatus
from edge.core.records import ClassifiedCell
from edge.report.summary import REVIEW_BELOW
from edge.storage.store import Store

FIELD_SIDE = 480  # longest side of a field thumbnail, pixels
REJECTED_SIDE = 240
CELL_SIDE = 96
MAX_FIELDS = 12  # annotated fields shown: those with the most white cells
MAX_REJECTED = 24  # rejected fields shown as thumbnails (all are listed)
MAX_CELLS_PER_CLASS = 16


@dataclass(frozen=True)
class Thumb:
    """One inlined picture and its caption; `flagged`: a cell to look at (low score)."""

    uri: str
    caption: str
    flagged: bool = False


@dataclass(frozen=True)
class Gallery:
    """What a report shows of the evidence, and how much there was."""

    fields: list[Thumb] = field(default_factory=list)
    fields_total: int = 0
    rejected: dict[int, Thumb] = field(default_factory=dict)  # field idx -> thumbnail
    cells: dict[str, list[Thumb]] = field(default_factory=dict)  # class -> crops shown
    cells_total: dict[str, int] = field(default_factory=dict)  # class -> crops stored
    missing: int = 0  # evidence files named in the store but absent or unreadable


def thumbnail(path: Path, side: int, quality: int = 75) -> str | None:
    """The image at `path` shrunk to `side` pixels at most, as a JPEG data: URI; None if the
    file is missing or unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def collect(store: Store, summary: dict[str, Any]) -> Gallery:
    """Thumbnails for the report of `summary`'s session: the counted fields with the most white
    cells (in capture order), every rejected field up to MAX_REJECTED, and per differential
    class some of its crops (`_sample`)."""
    missing = 0

    def thumb(rel: str | None, side: int, caption: str, flagged: bool = False) -> Thumb | None:
        nonlocal missing
        uri = thumbnail(store.data_dir / rel, side) if rel else None
        if rel and uri is None:
            missing += 1
        return Thumb(uri, caption, flagged) if uri else None

    counted = [f for f in summary["fields"] if f["status"] == FieldStatus.COUNTED]
    busiest = sorted(counted, key=lambda f: (-(f["counts"] or {}).get(WBC, 0), f["idx"]))
    fields = [t for f in sorted(busiest[:MAX_FIELDS], key=lambda f: f["idx"])
              if (t := thumb(f["evidence"], FIELD_SIDE, _field_caption(f)))]
    rejected = {}
    for f in summary["fields"]:
        if f["status"] == FieldStatus.REJECTED and len(rejected) < MAX_REJECTED:
            t = thumb(f["evidence"], REJECTED_SIDE, f"field {f['idx']}: {f['reason']}")
            if t:
                rejected[f["idx"]] = t
    by_class: dict[str, list[ClassifiedCell]] = {}
    for c in store.classified_cells(summary["session_id"]):
        by_class.setdefault(c.label, []).append(c)
    cells, totals = {}, {}
    for label, found in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
        totals[label] = len(found)
        cells[label] = [t for c in _sample(found)
                        if (t := thumb(c.crop_path, CELL_SIDE,
                                       f"field {c.field_idx} cell {c.cell} · {c.label_score:.2f}",
                                       c.label_score < REVIEW_BELOW))]
    return Gallery(fields, len(counted), rejected, cells, totals, missing)


def _sample(cells: list[ClassifiedCell]) -> list[ClassifiedCell]:
    """Up to MAX_CELLS_PER_CLASS crops of one class: cells flagged for review first, in
    capture order, taking at most half the places while confident cells are left to show."""
    flagged = [c for c in cells if c.label_score < REVIEW_BELOW]
    confident = [c for c in cells if c.label_score >= REVIEW_BELOW]
    n_flagged = max(MAX_CELLS_PER_CLASS // 2, MAX_CELLS_PER_CLASS - len(confident))
    shown = flagged[:n_flagged]
    return shown + confident[:MAX_CELLS_PER_CLASS - len(shown)]


def _field_caption(f: dict[str, Any]) -> str:
    counts = f["counts"] or {}
    return f"field {f['idx']} · " + " · ".join(f"{k} {n}" for k, n in sorted(counts.items()))
