"""The report-document options of `hemascope report` and `hemascope run`, and writing them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.cli.options import err, out
from edge.report.documents import Targets, make_documents
from edge.storage.store import Store

_FOLDER = " A folder: SAMPLE-SESSION with the suffix inside it."
HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Write the HTML report (one self-contained file) here." + _FOLDER)]
PdfOpt = Annotated[Path | None, typer.Option(
    "--pdf", help="Write the PDF report here (the HTML printed by headless Chromium)."
    + _FOLDER)]
FhirOpt = Annotated[Path | None, typer.Option(
    "--fhir", help="Write the FHIR R4 bundle (JSON) here; with --pdf it carries the PDF."
    + _FOLDER)]


def write_documents(store: Store, session: str, targets: Targets) -> None:
    """Make and write the documents, then say what was written (notes on stderr)."""
    written = make_documents(store, session, targets)
    for note in written.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    for label, path in written.paths.items():
        out.print(f"{label}: {path.resolve()}", markup=False, highlight=False, soft_wrap=True)
