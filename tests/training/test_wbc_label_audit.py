"""scripts/wbc_label_audit.py: label corrections are applied only where they match the labels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from training.evaluate import load_truth

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["WBC", "RBC", "Platelets"]


def load_script():
    spec = importlib.util.spec_from_file_location("wbc_label_audit",
                                                  ROOT / "scripts" / "wbc_label_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def merged(tmp_path: Path) -> Path:
    """Two 100x100 val fields: `a` with one white cell, `b` with a white cell, a red cell and
    a second "white cell" at the border."""
    labels = tmp_path / "labels" / "val"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (labels / "b.txt").write_text("0 0.3 0.3 0.2 0.2\n1 0.6 0.6 0.1 0.1\n0 0.95 0.5 0.1 0.2\n")
    (tmp_path / "merge.json").write_text(json.dumps({"data_digest": "d1"}))
    return tmp_path


def audit(*corrections: dict) -> dict:
    return {"data_digest": "d1", "split": "val", "corrections": list(corrections)}


def truths(data: Path) -> list:
    return [load_truth(data / "labels" / "val" / f"{s}.txt", 100, 100) for s in "ab"]


REMOVE = {"image": "b", "action": "remove", "line": 2, "box": [90, 40, 100, 60], "certain": True}
ADD = {"image": "a", "action": "add", "box": [0, 0, 10, 10], "certain": False}


def test_corrections_remove_the_named_line_and_add_boxes(merged):
    script = load_script()
    names, found = ["a.jpg", "b.jpg"], truths(merged)
    fixed = script.corrected_truths(names, found, audit(REMOVE, ADD), certain_only=False)
    assert [len(t) for t in fixed] == [2, 2]
    assert fixed[1].class_id.tolist() == [0, 1]  # the border "white cell" is gone
    assert fixed[0].xyxy[1].tolist() == [0, 0, 10, 10] and fixed[0].class_id[1] == 0
    only_certain = script.corrected_truths(names, found, audit(REMOVE, ADD), True)
    assert [len(t) for t in only_certain] == [1, 2]


def test_a_flawless_detector_on_uncorrected_labels_is_capped_by_the_false_label(merged):
    script = load_script()
    names, found = ["a.jpg", "b.jpg"], truths(merged)
    real = script.corrected_truths(names, found, audit(REMOVE), certain_only=True)
    figures = script.wbc_figures(real, found, CLASSES, 0.5)
    assert figures["exact_share"] == 0.5 and figures["miscounted_fields"] == 1
    assert figures["AP50"] == pytest.approx(67 / 101)  # recall stops at 2 of 3


@pytest.mark.parametrize("change, message", [
    ({"line": 1}, "line 1 of b's labels is not the audited white-cell box"),  # a red cell
    ({"box": [20, 20, 40, 40]}, "line 2 of b's labels is not the audited"),
    ({"image": "c"}, "audited image c is not in the val split"),
])
def test_a_correction_that_does_not_match_the_labels_is_refused(merged, change, message):
    script = load_script()
    with pytest.raises(SystemExit, match=message):
        script.corrected_truths(["a.jpg", "b.jpg"], truths(merged),
                                audit({**REMOVE, **change}), certain_only=False)


def test_another_data_set_is_refused(merged):
    script = load_script()
    script.check_data(merged, audit(REMOVE))  # the set it was made on
    (merged / "merge.json").write_text(json.dumps({"data_digest": "other"}))
    with pytest.raises(SystemExit, match="is not the set the audit was made on"):
        script.check_data(merged, audit(REMOVE))
