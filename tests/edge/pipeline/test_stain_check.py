"""The stain check end to end: real runs on BCCD fields with the bundled differential, its
manifest given a reference from PBC crops (`hemascope eval --set-reference` does the same
from the training labs)."""

import json
import shutil

import cv2
import numpy as np
import pytest

from edge.inference.classifier import Classifier, resize_rgb
from edge.inference.manifest import manifest_path
from edge.inference.stain import MIN_CELLS
from edge.storage.store import Store
from tests.conftest import ROOT, needs_datasets, run_cli

BUNDLED = ROOT / "edge" / "models" / "wbc-differential.onnx"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(plain, with reference): copies of the bundled differential."""
    tmp = tmp_path_factory.mktemp("models")
    out = []
    for name in ("plain", "ref"):
        (tmp / name).mkdir()
        for path in (BUNDLED, manifest_path(BUNDLED)):
            shutil.copy(path, tmp / name / path.name)
        out.append(tmp / name / BUNDLED.name)
    plain = Classifier(out[0])  # the bundled manifest has a reference: take it away
    bare = plain.head.model_copy(update={"class_means": None, "reference_distance": None})
    manifest_path(out[0]).write_text(
        plain.manifest.model_copy(update={"head": bare}).model_dump_json(indent=2) + "\n")
    classifier = Classifier(out[1])
    pbc = needs_datasets() / "classification" / "pbc-8class"
    means = []
    for cls in classifier.classes:
        crops = [resize_rgb(cv2.imread(str(p)), classifier.size)
                 for p in sorted((pbc / cls).glob("*"))[:6]]
        means.append(classifier.embeddings(crops).mean(axis=0))
    head = classifier.head.with_reference(np.array(means, np.float32), 0.0)
    manifest = classifier.manifest.model_copy(update={"head": head})
    manifest_path(out[1]).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def _run(tmp, model, fields, name):
    src = tmp / f"fields-{fields}"
    if not src.exists():
        src.mkdir()
        images = sorted((needs_datasets() / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))
        for p in images[:fields]:
            shutil.copy(p, src / p.name)
    profile = tmp / f"{name}.toml"
    profile.write_text(f'[classifiers]\nwbc = true\nwbc_model = "{model}"\n')
    data = tmp / name
    result = run_cli("run", "-p", str(profile), "-s", f"folder:{src}", "--data-dir", str(data),
                     "--json", str(tmp / f"{name}.json"))
    assert result.returncode == 0, result.stderr
    return data, profile, json.loads((tmp / f"{name}.json").read_text()), result.stdout


def _labels(data, session_id):
    store = Store.open(data)
    try:
        return [row[0] for row in store.conn.execute(
            "SELECT c.label FROM cells c JOIN fields f ON f.id = c.field_id WHERE"
            " f.session_id = ? AND c.label IS NOT NULL ORDER BY f.idx, c.id", (session_id,))]
    finally:
        store.close()


def test_the_stain_check_measures_and_never_relabels(models, tmp_path):
    plain, ref = models
    data0, _, before, _ = _run(tmp_path, plain, 30, "plain")
    data, _, after, stdout = _run(tmp_path, ref, 30, "checked")
    assert before["stain"] is None  # no reference in the manifest: nothing measured
    stain = after["stain"]
    assert after["differential"]["classified"] >= MIN_CELLS
    assert stain["cells"] == after["differential"]["classified"] and stain["distance"] > 0
    # the reference (0: no training session moved at all) is exceeded: flagged, and said
    assert stain["reference_distance"] == 0.0 and stain["unfamiliar"] is True
    assert "stain looks unlike the smears the differential was trained on" in stdout
    # the labels are the runner's own, the same as a run without the check
    assert _labels(data, after["session_id"]) == _labels(data0, before["session_id"])
    assert after["differential"]["counts"] == before["differential"]["counts"]


def test_too_few_cells_are_not_judged(models, tmp_path):
    _, ref = models
    _, _, report, stdout = _run(tmp_path, ref, 6, "few")
    assert report["differential"]["classified"] < MIN_CELLS
    assert report["stain"] is None
    assert "unlike the smears" not in stdout


def test_a_calibrated_model_flags_a_drift_from_its_site(models, tmp_path):
    _, ref = models
    site = tmp_path / "site"
    site.mkdir()
    for path in (ref, manifest_path(ref)):
        shutil.copy(path, site / path.name)
    model = site / ref.name
    classifier = Classifier(model)
    calibration = {"base_sha256": classifier.manifest.sha256, "reviewed_cells": 50,
                   "cross_validated_accuracy": 0.9}
    manifest_path(model).write_text(classifier.manifest.model_copy(
        update={"calibration": calibration}).model_dump_json(indent=2) + "\n")
    _, _, report, stdout = _run(tmp_path, model, 30, "calibrated")
    assert report["stain"]["unfamiliar"] is True
    assert "stain looks unlike the smears the differential was calibrated on" in stdout
    assert "calibrate again if the stain, objective or camera changed" in stdout
