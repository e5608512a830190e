"""`hemascope review export-training`: reviewed cells as class folders `hemascope train
classify` reads, with a manifest; nothing half-written."""

import json

from edge.storage.store import Store
from tests.conftest import run_cli
from tests.helpers.review import MODEL_SHA, WBC_SHA, make_review_session
from training.classify_data import read_class_folders


def _two_reviewed_sessions(data):
    a = make_review_session(data)
    b = make_review_session(data)
    make_review_session(data)  # never reviewed: not exported by default
    store = Store.open(data)
    store.add_reviews(a, [(0, 0, "neutrophil"), (0, 2, "monocyte"), (1, 0, "lymphocyte")],
                      "amina", "review page")
    store.add_field_review(a, 1, True, "smudged", "amina", "review page")
    store.add_reviews(b, [(2, 1, "eosinophil"), (2, 2, "neutrophil")], "bola", "review page")
    store.close()
    return a, b


def test_reviewed_cells_become_class_folders_with_a_manifest(tmp_path):
    data = tmp_path / "data"
    a, b = _two_reviewed_sessions(data)
    out = tmp_path / "site-cells"
    done = run_cli("review", "export-training", str(out), "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert ("4 reviewed cells of 2 sessions written to" in done.stdout
            and "1 left out with their rejected fields" in done.stdout)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == sorted([f"eosinophil/{b[:12]}-00002-cell001.png",
                            f"monocyte/{a[:12]}-00000-cell002.png",
                            f"neutrophil/{a[:12]}-00000-cell000.png",
                            f"neutrophil/{b[:12]}-00002-cell002.png"])
    # the exact crop the model saw, filed under the reviewed class (the model said lymphocyte)
    assert (out / f"monocyte/{a[:12]}-00000-cell002.png").read_bytes() == (
        data / f"evidence/{a}/00000-cell002.png").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells"] == 4
    assert manifest["per_class"] == {"eosinophil": 1, "monocyte": 1, "neutrophil": 2}
    assert manifest["left_out_rejected_fields"] == 1
    assert "never corrects a box" in manifest["yolo_labels"]
    assert manifest["command"].startswith("hemascope review export-training")
    by_id = {s["id"]: s for s in manifest["sessions"]}
    assert set(by_id) == {a, b}
    assert by_id[a]["detector"] == {"file": "detector.onnx", "sha256": MODEL_SHA}
    assert by_id[a]["differential"] == {"file": "wbc-differential.onnx", "sha256": WBC_SHA}
    assert (by_id[a]["reviewed_cells"], by_id[a]["exported_cells"]) == (3, 2)
    assert by_id[b]["reviewers"] == ["bola"]
    # ... and the training side reads it as a class-folder dataset
    dataset = read_class_folders(out)
    assert dataset.classes == ["eosinophil", "monocyte", "neutrophil"]
    assert len(dataset.items) == 4


def test_named_sessions_only(tmp_path):
    data = tmp_path / "data"
    a, _ = _two_reviewed_sessions(data)
    out = tmp_path / "one"
    assert run_cli("review", "export-training", str(out), a[:8], "--data-dir",
                   str(data)).returncode == 0
    assert [s["id"] for s in json.loads((out / "manifest.json").read_text())["sessions"]] == [a]


def _fails(tmp_path, out, *args, message):
    done = run_cli("review", "export-training", str(out), *args, "--data-dir",
                   str(tmp_path / "data"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.glob(".*.partial"))


def test_nothing_is_written_over_a_folder_or_half_written(tmp_path):
    data = tmp_path / "data"
    a, _ = _two_reviewed_sessions(data)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    _fails(tmp_path, full, message="already exists and is not an empty folder")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    (data / f"evidence/{a}/00000-cell002.png").unlink()  # a crop lost from the evidence
    _fails(tmp_path, tmp_path / "new", message="field 0 cell 2: reviewed, but its crop is not")
    assert not (tmp_path / "new").exists()


def test_no_review_no_export(tmp_path):
    sid = make_review_session(tmp_path / "data")
    _fails(tmp_path, tmp_path / "x", message="no session has reviewed cells")
    _fails(tmp_path, tmp_path / "x", sid[:8], message="has no reviewed cells")
    assert not (tmp_path / "x").exists()
