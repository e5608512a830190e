"""`hemascope review export-training`: reviewed white cells as a class-folder dataset.

DIR/CLASS/SESSION12-NNNNN-cellKKK.png holds the exact crop the differential saw, filed under
the reviewed class (`hemascope train classify DIR` reads it as one laboratory), and
DIR/manifest.json lists the sessions, the models that counted and classified them, and the
counts. Cells of fields rejected in review are left out. Box corrections are not part of the
review (the page relabels cells and rejects fields; it never moves or adds a box), so no
YOLO labels are written, and the manifest says so.

The folder is written beside DIR under a temporary name and renamed into place at the end:
a failure (a crop missing from the evidence, a full disk) leaves no DIR behind.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge import __version__
from edge.core.errors import HemascopeError
from edge.core.files import utc_now
from edge.storage.store import Store

BOXES = ("not exported: the review relabels cells and rejects fields but never corrects a "
         "box, so there are no corrected fields to write as YOLO labels")


@dataclass(frozen=True)
class TrainingExport:
    out: Path
    sessions: int
    cells: int
    per_class: dict[str, int]
    left_out: int  # reviewed cells of fields rejected in review


def _session_cells(store: Store, session: str) -> tuple[dict, list[tuple[str, Path, str]], int]:
    """(manifest entry, [(class, crop file, file name)], cells left out) of one session."""
    row = store.session(session)
    reviews = store.reviews(row.id)
    if not reviews:
        raise HemascopeError(f"session {row.id[:12]} has no reviewed cells",
                             "review it first (hemascope review SESSION), or leave it out")
    crops = {(c.field_idx, c.cell): c for c in store.classified_cells(row.id)}
    rejected = {f.field_idx for f in store.field_reviews(row.id) if f.rejected}
    wbc = next((m for m in row.classifiers if m.get("role") == "wbc"), {})
    files, left_out = [], 0
    for r in reviews:
        if r.field_idx in rejected:
            left_out += 1
            continue
        cell = crops.get((r.field_idx, r.cell))
        crop = store.data_dir / cell.crop_path if cell and cell.crop_path else None
        if crop is None or not crop.is_file():
            raise HemascopeError(f"session {row.id[:12]} field {r.field_idx} cell {r.cell}: "
                                 "reviewed, but its crop is not in the evidence",
                                 "leave this session out; nothing was written")
        files.append((r.label, crop, f"{row.id[:12]}-{crop.name}"))
    entry = {"id": row.id, "sample_id": row.sample_id, "ended_at": row.ended_at,
             "detector": {"file": row.model_file, "sha256": row.model_sha256},
             "differential": {k: wbc.get(k) for k in ("file", "sha256")},
             "reviewers": sorted({r.reviewer for r in reviews if r.reviewer}),
             "reviewed_cells": len(reviews), "exported_cells": len(files),
             "left_out_rejected_fields": left_out,
             "per_class": dict(sorted(Counter(label for label, _, _ in files).items()))}
    return entry, files, left_out


def export_training(store: Store, out: Path, sessions: list[str], command: str
                    ) -> TrainingExport:
    """Write the reviewed cells of `sessions` (default: every session with reviewed cells)
    to `out`, which must not exist yet or be an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HemascopeError(f"{out} already exists and is not an empty folder",
                             "give a new folder (nothing is ever written over a dataset)")
    if not sessions:
        sessions = [s.id for s in store.sessions() if store.reviews(s.id)]
        if not sessions:
            raise HemascopeError("no session has reviewed cells",
                                 "review one first: hemascope review SESSION")
    entries, files, left_out = [], [], 0
    for s in sessions:
        entry, cells, skipped = _session_cells(store, s)
        if entry["id"] in {e["id"] for e in entries}:
            continue  # the same session named twice
        entries.append(entry)
        files += cells
        left_out += skipped
    per_class = dict(sorted(Counter(label for label, _, _ in files).items()))
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed export
    try:
        tmp.mkdir(parents=True)
        for label, src, name in files:
            (tmp / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / label / name)
        manifest = {"kind": "hemascope reviewed white cells", "created_at": utc_now(),
                    "hemascope_version": __version__, "command": command,
                    "layout": "CLASS/SESSION12-NNNNN-cellKKK.png, the crop the differential "
                              "saw, filed under its reviewed class",
                    "train_with": f"hemascope train classify {out}",
                    "sessions": entries, "cells": len(files), "per_class": per_class,
                    "left_out_rejected_fields": left_out, "yolo_labels": BOXES}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HemascopeError(f"cannot write {out} ({exc.strerror}: {exc.filename})",
                             "check the folder is writable and the disk has space; nothing "
                             "was written") from None
    return TrainingExport(out, len(entries), len(files), per_class, left_out)
