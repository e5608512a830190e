"""Real sessions for the report tests: BCCD fields and fields without white cells, through the
real pipeline with the bundled models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.report.summary import session_summary
from edge.storage.store import Store
from tests.conftest import needs_datasets
from tests.helpers.slides import bccd_slide, run_session, slide_without_white_cells

SAMPLE = "S-<b>42</b> & co"  # markup in a sample id must come out as text


@dataclass(frozen=True)
class Sessions:
    data_dir: Path
    slide: str  # six BCCD fields, a duplicate, a blank frame, a truncated file
    no_white_cells: str

    def store(self) -> Store:
        return Store.open(self.data_dir)

    def summary(self, session: str) -> dict:
        store = self.store()
        try:
            return session_summary(store, session)
        finally:
            store.close()


@pytest.fixture(scope="package")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Sessions:
    tmp = tmp_path_factory.mktemp("report-sessions")
    data = tmp / "data"
    # ids kept in clear ([privacy] keep_clear_ids), so the report shows the sample id as typed
    slide = run_session(data, bccd_slide(tmp / "slide", needs_datasets()), SAMPLE,
                        clear_ids=True)
    empty = run_session(data, slide_without_white_cells(tmp / "no-wbc"), "S-NOWBC")
    return Sessions(data, slide, empty)
