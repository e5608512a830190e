"""A site's reviewed cells and the differential calibrated from them, end to end through the
command line: a real run on BCCD fields, a review CSV, `hemascope calibrate wbc`, and a run
with the calibrated model."""

import json
import re
import shutil

import cv2
import pytest

from edge.inference.classifier import Classifier
from edge.inference.head import LinearHead
from edge.inference.stain import MIN_CELLS
from edge.storage import audit
from edge.storage.store import Store
from tests.conftest import ROOT, needs_datasets, run_cli

BASE_MODEL_NAME = "wbc-differential.onnx"


def _run(tmp, data, profile, name):
    src = tmp / name
    if not src.exists():
        src.mkdir()
        images = sorted((needs_datasets() / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))
        for p in images[:6]:
            shutil.copy(p, src / p.name)
    result = run_cli("run", "-p", str(profile), "-s", f"folder:{src}", "--data-dir", str(data),
                     "--json", str(tmp / f"{name}.json"))
    assert result.returncode == 0, result.stderr
    return json.loads((tmp / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(tmp, data dir, profile, report) of a differential run on six BCCD fields."""
    tmp = tmp_path_factory.mktemp("site")
    profile = tmp / "p.toml"
    profile.write_text("[classifiers]\nwbc = true\n")
    data = tmp / "data"
    return tmp, data, profile, _run(tmp, data, profile, "slide")


def _stored(data, session_id, what):
    """(field, cell, label) of the session's classified cells or of its reviews."""
    store = Store.open(data)
    try:
        return [(r.field_idx, r.cell, r.label) for r in getattr(store, what)(session_id)]
    finally:
        store.close()


def _cells(data, session_id):
    return _stored(data, session_id, "classified_cells")


def _reviews(data, session_id):
    return _stored(data, session_id, "reviews")


@pytest.mark.parametrize("rows, message", [
    ("field,cell,label\n999,0,lymphocyte\n", "line 2: session .* has no field 999"),
    ("field,cell,label\n{f},77,lymphocyte\n", "line 2: field {f} has no classified white cell 77"),
    ("field,cell,label\n{f},{c},{l}\n{f},{c},blastoid\n", "line 3: 'blastoid' is not a class"),
    ("field,cell,label\n{f},{c},{l}\n{f},{c},{l}\n",
     "line 3: field {f} cell {c} is also on line 2"),
    ("field,label,cell\n{f},{l},{c}\n", "header is field,label,cell"),
    ("field,cell,label\n{f},x,{l}\n", "line 2: field and cell must be whole numbers"),
])
def test_a_wrong_row_imports_nothing_and_names_the_row(site, rows, message):
    tmp, data, profile, report = site
    f, c, label = _cells(data, report["session_id"])[0]
    before = _reviews(data, report["session_id"])
    csv = tmp / "bad.csv"
    csv.write_text(rows.format(f=f, c=c, l=label))
    result = run_cli("review", "import", report["session_id"][:8], str(csv), "-p", str(profile),
                     "--data-dir", str(data))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.search(message.format(f=f, c=c), lines[0]), lines[0]
    assert _reviews(data, report["session_id"]) == before


def test_review_then_calibrate_then_run_with_the_calibrated_model(site):
    tmp, data, profile, report = site
    sid = report["session_id"]
    cells = _cells(data, sid)
    assert len(cells) >= 4
    # the technician says every cell is a lymphocyte (a deliberately strong correction)
    csv = tmp / "review.csv"
    csv.write_text("field,cell,label\n" + "".join(f"{f},{c},lymphocyte\n" for f, c, _ in cells))
    imported = run_cli("review", "import", sid[:8], str(csv), "--reviewer", "amina",
                       "-p", str(profile), "--data-dir", str(data))
    assert imported.returncode == 0, imported.stderr
    changed = sum(label != "lymphocyte" for _, _, label in cells)
    assert f"{len(cells)} reviewed cells stored ({changed} relabelled" in imported.stdout
    assert _reviews(data, sid) == [(f, c, "lymphocyte") for f, c, _ in cells]
    assert _cells(data, sid) == cells  # the model's output is untouched

    out = tmp / "site" / "site-wbc.onnx"
    calibrated = run_cli("calibrate", "wbc", sid[:8], "--out", str(out), "-p", str(profile),
                         "--data-dir", str(data))
    assert calibrated.returncode == 0, calibrated.stderr
    assert f"calibrated on {len(cells)} reviewed cells (lymphocyte {len(cells)})" in \
        calibrated.stdout
    manifest = json.loads(out.with_suffix(".json").read_text())
    cal = manifest["calibration"]
    model = Classifier(out)  # verifies the copied file against its manifest
    assert cal["sessions"] == [sid] and cal["reviewed_cells"] == len(cells)
    assert cal["base_file"] == BASE_MODEL_NAME and "basophil" in cal["uncorrected_classes"]
    assert cal["command"].startswith("hemascope calibrate wbc")
    assert cal["features"] == manifest["head"]["features"] == "colour/1"
    assert manifest["head"]["dim"] == 1280 + 256  # the embedding, then the colour histograms
    assert model.calibrated and model.sha256 != manifest["sha256"]  # a digest of its own
    rescaled = tmp / "site" / "rescaled.onnx"  # the same weights, another colour scaling
    shutil.copy(out, rescaled)
    colour_mean, colour_scale = model.head.feature_arrays()
    head = LinearHead.from_arrays(*model.head.arrays(), ("colour/1", colour_mean, 2 * colour_scale))
    rescaled.with_suffix(".json").write_text(model.manifest.model_copy(
        update={"file": rescaled.name, "head": head}).model_dump_json())
    assert Classifier(rescaled).sha256 != model.sha256
    review, calibration = audit.recent(data, 2)
    assert (review.kind, review.details["session"], review.details["cells"]) == \
        ("review.import", sid, len(cells))
    assert calibration.kind == "calibration" and calibration.details["digest"] == model.digest
    store = Store.open(data)
    crops = [store.data_dir / c.crop_path for c in store.classified_cells(sid)]
    store.close()
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in crops]
    said = model.probabilities(rgb).argmax(axis=1)
    assert (said == model.classes.index("lymphocyte")).mean() >= 0.8  # it learned the review
    # the stain check of a calibrated model measures a session against the site's reviewed
    # cells, not the training labs: these crops are the site, so they lie at its centre
    base = Classifier(ROOT / "edge" / "models" / BASE_MODEL_NAME)
    session = rgb * -(-MIN_CELLS // len(rgb))
    assert manifest["head"]["reference_distance"] == base.head.reference_distance
    at_site = model.stain_shift(model.embeddings(session))
    from_training = base.stain_shift(base.embeddings(session))
    assert at_site is not None and from_training is not None
    assert at_site.distance < 0.05 < from_training.distance

    site_profile = tmp / "site.toml"
    site_profile.write_text(f"[classifiers]\nwbc = true\nwbc_model = '{out}'\n")
    again = _run(tmp, data, site_profile, "slide")
    wbc = next(m for m in again["classifiers"] if m["role"] == "wbc")
    assert wbc["sha256"] == model.sha256
    assert wbc["calibration"]["base_sha256"] == cal["base_sha256"]
    field, cell, _ = _cells(data, again["session_id"])[0]
    overlay = tmp / "explained.png"
    explained = run_cli("explain", again["session_id"][:8], str(field), "--cell", str(cell),
                        "--out", str(overlay), "-p", str(site_profile), "--data-dir", str(data))
    assert explained.returncode == 0, explained.stderr  # the site head, colours and all
    assert cv2.imread(str(overlay)) is not None
    shown = run_cli("report", again["session_id"][:8], "-p", str(site_profile), "--data-dir",
                    str(data), "--json", str(tmp / "again.json"))
    assert "calibrated for this site on" in shown.stdout
    doctor = run_cli("doctor", "-p", str(site_profile))
    assert "calibrated on" in doctor.stdout

    refused = run_cli("calibrate", "wbc", again["session_id"][:8], "--out", str(tmp / "x.onnx"),
                      "-p", str(site_profile), "--data-dir", str(data))
    assert refused.returncode == 2 and "has no reviewed cells" in refused.stderr
    assert not (tmp / "x.onnx").exists()
