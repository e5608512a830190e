"""A technician's review of a session's white cells: which sessions can be reviewed, and the
import of a review from CSV (columns field,cell,label), every row checked against the
stored cells and the model's classes before any is stored. Storing a review queues the
session's next sync payload version in the same transaction."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.core.labels import SessionStatus
from edge.core.records import ClassifiedCell, SessionRecord
from edge.storage import audit
from edge.storage.store import Store
from edge.sync.payload import requeue

COLUMNS = ("field", "cell", "label")


@dataclass(frozen=True)
class ReviewImport:
    session_id: str
    rows: int
    changed: int  # rows whose label differs from the model's
    payload_version: int | None  # the sync payload version queued with it


def wbc_classes(session: SessionRecord) -> list[str]:
    """The classes of the differential a session ran with; an error if it ran without."""
    used = next((m for m in session.classifiers if m["role"] == "wbc"), None)
    if used is None:
        raise HemascopeError(f"session {session.id[:12]} ran without the white-cell "
                             "differential: it has no classified cells to review",
                             "review a session run with classifiers.wbc = true")
    return list(used["classes"])


def reviewable(store: Store, session: str) -> tuple[SessionRecord, list[str],
                                                   list[ClassifiedCell]]:
    """(session, classes of its differential, its classified white cells) of a session that
    can be reviewed: ended, run with the differential, with at least one classified cell."""
    row = store.session(session)
    if row.status is SessionStatus.RUNNING:
        raise HemascopeError(f"session {row.id[:12]} is still running",
                             "review it once `hemascope run` has finished or was stopped")
    classes = wbc_classes(row)
    cells = store.classified_cells(row.id)
    if not cells:
        raise HemascopeError(f"session {row.id[:12]} has no classified white cells to review",
                             "review a session whose fields held white cells")
    return row, classes, cells


def read_review_csv(path: Path) -> list[tuple[int, int, str, int]]:
    """(field, cell, label, line number) of every data row; a malformed file or row is a
    one-line error naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HemascopeError(f"cannot read review file {path}: {exc}",
                             "give a UTF-8 CSV file with columns field,cell,label") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if tuple(header) != COLUMNS:
        raise HemascopeError(f"{path}: header is {','.join(header) or 'empty'}",
                             "the first line must be exactly field,cell,label")
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != 3:
            raise HemascopeError(f"{path} line {line}: {len(values)} columns",
                                 "each row is field,cell,label; nothing was imported")
        try:
            field, cell = int(values[0]), int(values[1])
        except ValueError:
            raise HemascopeError(f"{path} line {line}: field and cell must be whole numbers "
                                 f"(got {values[0]!r}, {values[1]!r})",
                                 "use the NNNNN and KKK of the crop file NNNNN-cellKKK.png; "
                                 "nothing was imported") from None
        rows.append((field, cell, values[2].strip(), line))
    if not rows:
        raise HemascopeError(f"{path} has no rows", "add one row per reviewed cell")
    return rows


def import_review(store: Store, session: str, path: Path, reviewer: str | None) -> ReviewImport:
    """Check every row (known field and classified cell, a class of the model, no cell
    twice), then store them all in one transaction with their `review.import` audit event;
    nothing is stored if any row is wrong."""
    row, classes, classified = reviewable(store, session)
    cells = {(c.field_idx, c.cell): c.label for c in classified}
    fields = {f.idx for f in store.fields(row.id)}
    seen: dict[tuple[int, int], int] = {}
    changed = 0
    rows = read_review_csv(path)
    for field, cell, label, line in rows:
        where = f"{path} line {line}"
        if field not in fields:
            raise HemascopeError(f"{where}: session {row.id[:12]} has no field {field}",
                                 "use the NNNNN of the evidence file names; nothing was imported")
        if (field, cell) not in cells:
            known = sorted(c for f, c in cells if f == field)
            raise HemascopeError(f"{where}: field {field} has no classified white cell {cell}",
                                 f"its classified cells are {known or 'none'}; nothing was "
                                 "imported")
        if label not in classes:
            raise HemascopeError(f"{where}: {label!r} is not a class of the model",
                                 f"use one of {', '.join(classes)}; nothing was imported")
        if (field, cell) in seen:
            raise HemascopeError(f"{where}: field {field} cell {cell} is also on line "
                                 f"{seen[(field, cell)]}", "keep one row per cell; nothing was "
                                 "imported")
        seen[(field, cell)] = line
        changed += cells[(field, cell)] != label
    origin = f"csv {path.name} sha256 {file_sha256(path)}"
    with store.transaction():
        n = store.add_reviews(row.id, [(f, c, lab) for f, c, lab, _ in rows], reviewer, origin)
        version = requeue(store, row.id)
        audit.record(store, "review.import", {"session": row.id, "cells": n,
                                              "relabelled": changed, "origin": origin})
    return ReviewImport(row.id, n, changed, version)
