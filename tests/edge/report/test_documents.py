"""Writing report documents: refused for a running session or one with nothing counted,
marked for an interrupted one, all written or none, and never claiming a review the store did
not record."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from edge.core.errors import HemascopeError
from edge.report.documents import Targets, check_review, make_documents
from edge.storage.store import Store
from tests.edge.report.conftest import SAMPLE
from tests.edge.report.test_html import _with_other_parts
from tests.helpers.slides import run_session


def _make(sessions, session, **targets):
    store = sessions.store()
    try:
        return make_documents(store, session, Targets(**targets))
    finally:
        store.close()


def test_html_and_fhir_are_written_with_the_json(sessions, tmp_path):
    written = _make(sessions, sessions.slide, html=tmp_path / "r.html",
                    fhir=tmp_path / "r.fhir.json", json=tmp_path / "r.json")
    assert written.notes == [] and set(written.paths) == {"HTML report", "FHIR R4 bundle",
                                                          "JSON report"}
    assert json.loads((tmp_path / "r.json").read_text())["session_id"] == sessions.slide
    assert json.loads((tmp_path / "r.fhir.json").read_text())["resourceType"] == "Bundle"
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.fhir.json", "r.html", "r.json"]


def test_a_folder_target_gets_a_file_named_after_sample_and_session(sessions, tmp_path):
    written = _make(sessions, sessions.slide, html=tmp_path)
    path = written.paths["HTML report"]
    assert path.parent == tmp_path
    assert path.name == f"S-_b_42_b_co-{sessions.slide[:12]}.html"  # SAMPLE, made file-safe
    assert SAMPLE not in path.name and path.is_file()


def test_a_running_session_gets_no_report(tmp_path):
    store = Store.open(tmp_path / "data")
    sid = store.start_session(sample_id="S-RUN", operator=None, profile_name="p",
                              profile_json="{}", source="camera:0", model_file="m.onnx",
                              model_sha256="0" * 64, classes=["WBC", "RBC", "Platelets"],
                              version="0")
    with pytest.raises(HemascopeError, match="still running") as exc:
        make_documents(store, sid, Targets(html=tmp_path / "r.html"))
    assert "nothing was written" in exc.value.fix
    assert not (tmp_path / "r.html").exists()


def test_a_session_with_no_counted_field_gets_no_report(tmp_path):
    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((480, 640, 3), 190, np.uint8))
    data = tmp_path / "data"
    sid = run_session(data, folder, "S-BLANK", classifiers=False)
    store = Store.open(data)
    with pytest.raises(HemascopeError, match=r"no counted field \(2 rejected"):
        make_documents(store, sid, Targets(html=tmp_path / "r.html", json=tmp_path / "r.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank", "data"]
    make_documents(store, sid, Targets(json=tmp_path / "r.json"))  # the JSON still explains


def test_a_session_without_white_cells_is_reported_with_a_note(sessions, tmp_path):
    written = _make(sessions, sessions.no_white_cells, html=tmp_path / "r.html")
    assert written.notes == ["no white cells were found in the 4 counted fields: the report "
                             "has no differential"]


def test_an_unwritable_target_stops_everything_before_anything_is_written(sessions, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(HemascopeError, match=r"cannot write the FHIR R4 bundle to .*blocker"):
        _make(sessions, sessions.slide, html=tmp_path / "r.html",
              fhir=blocker / "sub" / "r.fhir.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    with pytest.raises(HemascopeError, match="same path"):
        _make(sessions, sessions.slide, html=tmp_path / "r", fhir=tmp_path / "r")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a read-only folder")
def test_a_read_only_folder_is_refused(sessions, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(HemascopeError, match="is not writable"):
            _make(sessions, sessions.slide, html=folder / "r.html")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_without_chromium_no_pdf_and_nothing_else_is_written(sessions, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no chromium can be found
    with pytest.raises(HemascopeError, match="chromium is not installed") as exc:
        _make(sessions, sessions.slide, html=tmp_path / "r.html", pdf=tmp_path / "r.pdf")
    assert "apt install chromium" in exc.value.fix
    assert list(tmp_path.iterdir()) == []


def test_a_summary_claiming_a_review_must_match_the_stored_review_rows(sessions, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sessions.data_dir, data)
    store = Store.open(data)
    summary = _with_other_parts(sessions.summary(sessions.slide))
    claimed = summary["review"]["reviewed_cells"]
    with pytest.raises(HemascopeError, match=f"claims {claimed} reviewed cells, but the device "
                       "recorded 0"):
        check_review(store, summary)
    cells = store.classified_cells(sessions.slide)
    store.add_reviews(sessions.slide, [(c.field_idx, c.cell, "lymphocyte") for c in cells],
                      "amina", "test")
    check_review(store, summary)  # every classified cell reviewed: the claim holds
    # rows that name no classified cell, or no class of the model, are not a review
    store.conn.execute("UPDATE reviews SET label = 'unicorn' WHERE id = (SELECT MIN(id) FROM"
                       " reviews)")
    store.add_reviews(sessions.slide, [(999, 0, "lymphocyte")], "mallory", "sql")
    with pytest.raises(HemascopeError, match=f"but the device recorded {claimed - 1}"):
        check_review(store, summary)
    summary["review"] = None
    check_review(store, summary)  # not reviewed: nothing to check, the report says so
