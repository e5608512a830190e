"""The runner's second stage: WBC differential per white cell, ALL subtype per field, the
report's differential, and `hemascope explain` on what was stored."""

import json
import shutil
import sqlite3

import cv2
import numpy as np
import pytest

from edge.core.detections import Detections
from edge.core.records import FieldRecord
from edge.pipeline.scale import rbc_diameter
from edge.pipeline.second_stage import square_crop
from edge.storage.store import _V3_COLUMNS, Store
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def classified_session(tmp_path_factory):
    """A real run on four BCCD fields with both classifiers on; returns (data dir, report)."""
    from tests.conftest import needs_datasets

    images = sorted((needs_datasets() / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:4]
    tmp = tmp_path_factory.mktemp("second_stage")
    src = tmp / "slide"
    src.mkdir()
    for p in images:
        shutil.copy(p, src / p.name)
    profile = tmp / "p.toml"
    profile.write_text("[classifiers]\nwbc = true\nall_subtype = true\n")
    data = tmp / "data"
    result = run_cli("run", "-p", str(profile), "-s", f"folder:{src}", "--data-dir", str(data),
                     "--json", str(tmp / "r.json"))
    assert result.returncode == 0, result.stderr
    assert "white-cell differential" in result.stdout and "ALL subtype" in result.stdout
    return data, json.loads((tmp / "r.json").read_text())


def test_every_counted_white_cell_gets_a_class_and_its_crop(classified_session):
    data, report = classified_session
    store = Store.open(data)
    wbc_total = report["totals"]["WBC"]
    assert wbc_total >= 3
    labelled = flagged = 0
    for f in report["fields"]:
        for i, cell in enumerate(store.cells(report["session_id"], f["idx"])):
            if cell.class_name != "WBC":
                assert cell.label is None and cell.crop_path is None
                continue
            labelled += 1
            flagged += cell.label_score < 0.6 or cell.label == "platelet"
            assert cell.label in report["classifiers"][0]["classes"]
            assert 0 < cell.label_score <= 1
            assert cell.crop_path.endswith(f"{f['idx']:05d}-cell{i:03d}.png")
            assert cv2.imread(str(data / cell.crop_path)).shape == (128, 128, 3)
    diff = report["differential"]
    assert labelled == wbc_total == diff["classified"] == sum(diff["counts"].values())
    assert sum(diff["percent"].values()) == pytest.approx(100, abs=0.2)
    assert diff["review"] == flagged and diff["reliable"] == (flagged <= 0.2 * labelled)
    # a 95 % interval for every white-cell class of the model, seen or not
    white = [c for c in report["classifiers"][0]["classes"] if c != "platelet"]
    assert set(diff["interval_95"]) == set(white)
    for label, (low, high) in diff["interval_95"].items():
        share = 100 * diff["counts"].get(label, 0) / labelled
        assert low <= share + 0.05 and share - 0.05 <= high and high - low > 0
    assert diff["insufficient"]  # a handful of cells is never a sufficient differential


def test_every_counted_field_has_all_subtype_probabilities(classified_session):
    _, report = classified_session
    probs = [f["all_subtype"] for f in report["fields"] if f["status"] == "counted"]
    assert probs and all(p is not None and sum(p.values()) == pytest.approx(1, abs=1e-4)
                         for p in probs)
    means = report["all_subtype"]["mean_probability"]
    for k, v in means.items():
        assert v == pytest.approx(np.mean([p[k] for p in probs]), abs=1e-4)
    models = {m["role"]: m for m in report["classifiers"]}
    assert set(models) == {"wbc", "all_subtype"} and len(models["wbc"]["sha256"]) == 64


def test_the_report_words_the_session_all_call_as_a_screening_aid(classified_session,
                                                                   tmp_path):
    data, report = classified_session
    call = report["all_call"]
    probs = [f["all_subtype"] for f in report["fields"] if f["status"] == "counted"]
    assert call["fields"] == len(probs) and 0 < call["field_agreement"] <= 1
    assert call["wording"].endswith("Confirm by smear review and immunophenotyping.")
    printed = run_cli("report", report["session_id"], "--data-dir", str(data),
                      "--json", str(tmp_path / "again.json"))
    assert printed.returncode == 0, printed.stderr
    assert call["wording"] in " ".join(printed.stdout.split())
    assert f"ALL subtype ({call['aggregation']} of {call['fields']} fields)" in printed.stdout


def test_explain_reproduces_the_stored_decision_and_writes_an_overlay(classified_session,
                                                                      tmp_path):
    data, report = classified_session
    store = Store.open(data)
    sid = report["session_id"]
    idx, cell = next((f["idx"], i) for f in report["fields"]
                     for i, c in enumerate(store.cells(sid, f["idx"])) if c.label)
    stored = store.cells(sid, idx)[cell]
    out = tmp_path / "cell.png"
    result = run_cli("explain", sid[:8], str(idx), "--cell", str(cell), "--data-dir", str(data),
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"stored {stored.label} {stored.label_score:.3f}" in result.stdout
    assert f"recomputed with wbc-differential.onnx {stored.label} " \
           f"{stored.label_score:.3f}" in result.stdout
    image = cv2.imread(str(out))
    assert image.shape[1] == 2 * 3 * 128  # input and overlay side by side, 3x
    left, right = image[:384, :384].astype(int), image[:384, 384:].astype(int)
    assert np.abs(left - right).mean() > 10  # the overlay is tinted by the map
    field = run_cli("explain", sid[:8], str(idx), "--data-dir", str(data),
                    "--out", str(tmp_path / "field.png"))
    assert field.returncode == 0 and "recomputed with all-subtype.onnx" in field.stdout


def test_explain_names_what_is_missing(classified_session):
    data, report = classified_session
    sid = report["session_id"]
    bad = run_cli("explain", sid[:8], str(report["fields"][0]["idx"]), "--cell", "999",
                  "--data-dir", str(data))
    assert bad.returncode == 2 and "has no classified cell 999" in bad.stderr
    assert "classified cells of this field" in bad.stderr


def test_square_crop_is_centred_and_filled_at_the_border():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255
    crop = square_crop(image, np.array([90, 40, 110, 60]), 50)
    assert crop.shape == (50, 50, 3)
    assert crop[15:35, 15:35].min() == 255 and crop[:14].max() == 0
    image[:20, :20] = 128  # a cell in the corner
    edge = square_crop(image, np.array([0, 0, 20, 20]), 60)
    assert edge.shape == (60, 60, 3)
    assert (edge[20:40, 20:40] == 128).all()  # still centred
    assert (edge[:20, 20:40] == 128).all() and edge[45:, 45:].max() == 0  # border replicated


def test_a_schema_2_database_is_upgraded_without_losing_fields(tmp_path):
    store = Store.open(tmp_path)
    sid = store.start_session(sample_id="S-1", operator=None, profile_name="t",
                              profile_json="{}", source="synthetic", model_file="m.onnx",
                              model_sha256="abc", classes=["WBC"], version="0")
    store.add_field(sid, "abc", ["WBC"], FieldRecord(idx=0, origin="a", captured_at="x",
                                                     status="skipped", reason="r"))
    store.close()
    conn = sqlite3.connect(tmp_path / "hemascope.db")  # make it what hemascope 0.1 wrote
    for table, column in _V3_COLUMNS:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column.split()[0]}")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    store = Store.open(tmp_path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert [f.origin for f in store.fields(sid)] == ["a"]
    assert store.cells(sid, 0) == [] and store.differential(sid) == []


def test_the_red_cell_ruler_ignores_cut_cells_and_needs_three():
    boxes = [[10, 10, 40, 40], [50, 50, 80, 80], [100, 100, 130, 130],  # whole, 30 px
             [0, 10, 12, 40], [185, 60, 200, 90]]  # cut by the left and right borders
    det = Detections.from_arrays(boxes, [1, 1, 1, 1, 1])
    assert rbc_diameter(det, 1, (150, 200)) == 30
    assert rbc_diameter(det[np.array([0, 1, 3, 4])], 1, (150, 200)) is None
    assert rbc_diameter(det, 0, (150, 200)) is None  # no boxes of that class


def test_a_database_from_a_newer_hemascope_is_refused_untouched(tmp_path):
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "hemascope.db")
    conn.execute("PRAGMA user_version=9")
    conn.commit()
    conn.close()
    from edge.core.errors import HemascopeError

    with pytest.raises(HemascopeError, match="newer hemascope"):
        Store.open(tmp_path)
    conn = sqlite3.connect(tmp_path / "hemascope.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 9


def test_the_ruler_falls_back_to_the_session_then_resets_for_a_new_slide():
    from edge.config import ClassifiersConfig
    from edge.pipeline.second_stage import FieldClassifiers

    fc = FieldClassifiers(ClassifiersConfig(wbc=True), ["WBC", "RBC", "Platelets"])
    three = Detections.from_arrays([[10, 10, 40, 40], [50, 50, 80, 80], [90, 90, 120, 120]],
                                   [1, 1, 1])
    few = Detections.from_arrays([[10, 10, 60, 60]], [1])
    assert fc._ruler(few, (200, 200)) is None  # nothing measured yet
    assert fc._ruler(three, (200, 200)) == 30
    assert fc._ruler(few, (200, 200)) == 30  # the session's red cells so far
    fc.new_session()
    assert fc._ruler(few, (200, 200)) is None
