"""The report documents of a stored session (JSON, HTML, PDF, FHIR R4): the session and every
target checked first, each document made in memory, then all written at once or none.

A document (HTML, PDF, FHIR) is refused for a session still running (it would miss fields still
to come) and for one without a single counted field (it would have no result); an interrupted
session gets one, marked as such. Reviewed figures come from the summary's "review" part only,
and only when it matches the review rows in the store: a report cannot claim a review that the
device did not record.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.errors import HemascopeError
from edge.core.files import utc_now, write_files_atomic
from edge.core.labels import WBC, SessionStatus
from edge.report.summary import session_summary, summary_json
from edge.storage.store import Store

KINDS = {"json": ("JSON report", ".json"), "html": ("HTML report", ".html"),
         "pdf": ("PDF report", ".pdf"), "fhir": ("FHIR R4 bundle", ".fhir.json")}
NOTHING_WRITTEN = "nothing was written"


@dataclass(frozen=True)
class Targets:
    """Where to write each document; None: not wanted. A path that is an existing folder gets
    a file named SAMPLE-SESSION12 with the document's suffix inside it."""

    json: Path | None = None
    html: Path | None = None
    pdf: Path | None = None
    fhir: Path | None = None

    def wanted(self) -> dict[str, Path]:
        return {k: p for k in KINDS if (p := getattr(self, k)) is not None}

    @property
    def documents(self) -> bool:
        return any(k != "json" for k in self.wanted())


@dataclass(frozen=True)
class Written:
    """What was written (label -> path), and lines the operator should read."""

    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_session(summary: dict[str, Any]) -> list[str]:
    """Refuse a document for a running session or one with no counted field; the notes for an
    interrupted session and for one without white cells."""
    sid = summary["session_id"][:12]
    if summary["status"] == SessionStatus.RUNNING:
        raise HemascopeError(f"session {sid} is still running: a report now would miss the "
                             "fields still to come",
                             f"wait for the run to finish (or stop it with Ctrl-C), then make "
                             f"the report; {NOTHING_WRITTEN}")
    if not summary["fields_counted"]:
        raise HemascopeError(f"session {sid} has no counted field ({summary['fields_rejected']} "
                             f"rejected by quality control, {summary['fields_skipped']} "
                             "unreadable): there is no result to report",
                             f"see each field's reason with `hemascope report {sid} --json "
                             f"FILE`, fix the smear, focus or camera and run again; "
                             f"{NOTHING_WRITTEN}")
    notes = []
    if summary["status"] == SessionStatus.INTERRUPTED:
        notes.append(f"session {sid} was interrupted: the report says so and covers the "
                     f"{summary['fields_counted']} fields counted before the stop")
    if not summary["totals"].get(WBC):
        notes.append(f"no white cells were found in the {summary['fields_counted']} counted "
                     "fields: the report has no differential")
    return notes


def check_review(store: Store, summary: dict[str, Any]) -> None:
    """A summary that says the session was reviewed must agree with the store: as many
    reviewed cells as there are review rows for a classified cell with a class of the model."""
    claimed = summary.get("review")
    if not claimed:
        return
    sid = summary["session_id"]
    classes = {c for m in summary["classifiers"] if m.get("role") == "wbc"
               for c in m.get("classes", [])}
    cells = {(c.field_idx, c.cell) for c in store.classified_cells(sid)}
    recorded = {(r.field_idx, r.cell) for r in store.reviews(sid)
                if (r.field_idx, r.cell) in cells and r.label in classes}
    if claimed.get("reviewed_cells") != len(recorded):
        raise HemascopeError(f"session {sid[:12]} claims {claimed.get('reviewed_cells')} "
                             f"reviewed cells, but the device recorded {len(recorded)} valid "
                             "reviews: a report cannot claim a review the device did not record",
                             "run `hemascope doctor` (the database may have been altered) and "
                             f"review the session again; {NOTHING_WRITTEN}")


def _resolve(kind: str, path: Path, summary: dict[str, Any]) -> Path:
    if path.is_dir():
        sample = re.sub(r"[^A-Za-z0-9._-]+", "_", summary["sample_id"]).strip("._") or "sample"
        return path / f"{sample}-{summary['session_id'][:12]}{KINDS[kind][1]}"
    return path


def _check_writable(paths: dict[str, Path]) -> None:
    """Fail before any work when a target's folder cannot be written (the write itself still
    reports what this misses, e.g. a read-only file system)."""
    if len(set(paths.values())) < len(paths):
        raise HemascopeError("two reports were given the same path",
                             f"give each document its own file; {NOTHING_WRITTEN}")
    for kind, path in paths.items():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            why = ("it is a folder" if path.is_dir() else f"{folder} is not a folder"
                   if not folder.is_dir() else f"{folder} is not writable")
            raise _write_error(kind, path, why)


def _write_error(kind: str, path: Path, why: str) -> HemascopeError:
    return HemascopeError(f"cannot write the {KINDS[kind][0]} to {path} ({why})",
                          f"choose a file in a folder you can write to; {NOTHING_WRITTEN}")


def make_documents(store: Store, session: str, targets: Targets,
                   generated_at: str | None = None) -> Written:
    """Check, make and write the wanted documents of `session` (an id or unique prefix)."""
    summary = session_summary(store, session)
    notes = check_session(summary) if targets.documents else []
    check_review(store, summary)
    paths = {k: _resolve(k, p, summary) for k, p in targets.wanted().items()}
    _check_writable(paths)
    executable = None
    if "pdf" in paths:
        from edge.report.pdf import chromium

        executable = chromium()  # before any work: no Chromium, no documents
    files: dict[Path, bytes] = {}
    now = generated_at or utc_now()
    if "json" in paths:
        files[paths["json"]] = summary_json(summary)
    pdf = None
    if "html" in paths or "pdf" in paths:
        from edge.report.gallery import collect  # OpenCV: only when pictures are needed
        from edge.report.html import render_html

        page = render_html(summary, collect(store, summary), now)
        if "html" in paths:
            files[paths["html"]] = page.encode()
        if executable is not None:
            from edge.report.pdf import html_to_pdf

            pdf = files[paths["pdf"]] = html_to_pdf(page, executable)
    if "fhir" in paths:
        from edge.report.fhir import fhir_bundle, validate

        bundle = fhir_bundle(summary, now, pdf)
        validate(bundle)
        files[paths["fhir"]] = (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode()
    try:
        write_files_atomic(files)
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else None
        failed = next((p for p in files if where in (p, p.with_name(f".{p.name}.tmp"))
                       or where in p.parents), next(iter(files)))
        kind = next(k for k, p in paths.items() if p == failed)
        raise _write_error(kind, failed, exc.strerror or str(exc)) from None
    return Written(summary, {KINDS[k][0]: p for k, p in paths.items()}, notes)
