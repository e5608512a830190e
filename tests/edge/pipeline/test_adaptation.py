"""Session adaptation end to end: real runs on BCCD fields with the bundled differential, its
manifest given a reference from PBC crops (`hemascope eval --set-reference` does the same
from the training labs)."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from edge.inference.adapt import MIN_CELLS
from edge.inference.classifier import Classifier, resize_rgb
from edge.inference.manifest import manifest_path
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
    classifier = Classifier(out[1])
    pbc = needs_datasets() / "classification" / "pbc-8class"
    means = []
    for cls in classifier.classes:
        crops = [resize_rgb(cv2.imread(str(p)), classifier.size)
                 for p in sorted((pbc / cls).glob("*"))[:6]]
        means.append(classifier.embeddings(crops).mean(axis=0))
    head = classifier.head.with_reference(np.array(means, np.float32), 0.5)
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


def _raw_labels(data, session_id):
    store = Store.open(data)
    try:
        return [row[0] for row in store.conn.execute(
            "SELECT c.label FROM cells c JOIN fields f ON f.id = c.field_id WHERE"
            " f.session_id = ? AND c.label IS NOT NULL ORDER BY f.idx, c.id", (session_id,))]
    finally:
        store.close()


def test_a_session_is_adapted_beside_the_runners_labels(models, tmp_path):
    plain, ref = models
    data0, _, before, _ = _run(tmp_path, plain, 30, "plain")
    data, profile, after, stdout = _run(tmp_path, ref, 30, "adapted")
    assert before["adaptation"] is None  # no reference in the manifest: nothing adapted
    adapted = after["adaptation"]
    cells = after["differential"]["classified"]
    assert cells >= MIN_CELLS
    assert adapted["cells"] == cells and adapted["distance"] > 0
    assert "adapted to this slide's stain" in stdout
    # the runner's own labels are stored unchanged (the same as a run without reference)...
    raw = _raw_labels(data, after["session_id"])
    assert raw == _raw_labels(data0, before["session_id"])
    # ...and the session's labels are the adapted ones, counted in the differential
    store = Store.open(data)
    try:
        session_labels = [c.label for c in store.classified_cells(after["session_id"])]
    finally:
        store.close()
    assert sum(a != b for a, b in zip(raw, session_labels, strict=True)) == adapted["changed"]
    counts = {k: session_labels.count(k) for k in set(session_labels)}
    assert after["differential"]["counts"] == dict(sorted(counts.items()))
    # explain replays the session's shift: it recomputes the stored (adapted) decision, on a
    # cell whose label adaptation changed when there is one
    store = Store.open(data)
    try:
        cells = store.classified_cells(after["session_id"])
    finally:
        store.close()
    changed = [c for c, r in zip(cells, raw, strict=True) if c.label != r]
    cell = (changed or cells)[0]
    result = run_cli("explain", after["session_id"][:8], str(cell.field_idx), "--cell",
                     str(cell.cell), "-p", str(profile), "--data-dir", str(data),
                     "--out", str(tmp_path / "why.png"))
    assert result.returncode == 0, result.stderr
    said = re.search(r"stored (\w+) ([\d.]+), recomputed with \S+ (\w+) ([\d.]+)",
                     result.stdout)
    assert said is not None, result.stdout
    assert said[1] == said[3] == cell.label and said[2] == said[4]


def test_too_few_cells_are_not_adapted(models, tmp_path):
    _, ref = models
    _, _, report, _ = _run(tmp_path, ref, 6, "few")
    assert report["differential"]["classified"] < MIN_CELLS
    assert report["adaptation"] is None
