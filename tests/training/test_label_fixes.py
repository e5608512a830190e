"""Reviewed corrections to training labels, applied when detection sets are merged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.files import file_sha256
from training.datasets import DatasetError, merge
from training.label_fixes import load_label_fixes

W, H = 200, 100  # image size: fixes are in pixels, labels normalised


def write_set(root: Path) -> dict[str, str]:
    """A YOLO set: train images t0 (a white cell and a "white cell" on a red cell) and t1
    (one red cell), val image v0 (one white cell). Returns name -> content hash."""
    labels = {"train/t0": "0 0.25 0.5 0.2 0.4\n0 0.75 0.5 0.1 0.2\n",
              "train/t1": "1 0.5 0.5 0.1 0.2\n", "val/v0": "0 0.5 0.5 0.2 0.4\n"}
    hashes = {}
    for i, (key, text) in enumerate(labels.items()):
        split, name = key.split("/")
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        image = root / "images" / split / f"{name}.png"
        cv2.imwrite(str(image), np.full((H, W, 3), 40 * i, np.uint8))  # distinct content
        (root / "labels" / split / f"{name}.txt").write_text(text)
        hashes[name] = file_sha256(image)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\n"
                                    "names: ['WBC', 'RBC', 'Platelets']\n")
    return hashes


def fix_file(path: Path, *fixes: dict) -> Path:
    path.write_text(json.dumps({"about": "test", "fixes": list(fixes)}))
    return path


def labels_of(out: Path, split: str, sha: str) -> list[list[float]]:
    text = (out / "labels" / split / f"{sha[:16]}.txt").read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "set"
    return root, write_set(root)


def test_fixes_relabel_remove_and_add_and_change_the_digest(tmp_path, dataset):
    root, sha = dataset
    fixes = fix_file(
        tmp_path / "fixes.json",
        {"image": sha["t0"][:16], "action": "relabel", "class": "WBC", "to": "RBC",
         "box": [140, 40, 160, 60], "finding": "a red cell labelled as a white cell"},
        {"image": sha["t1"][:16], "action": "add", "class": "WBC", "box": [10, 10, 50, 90],
         "finding": "a white cell without a label"},
        {"image": sha["t1"][:16], "action": "remove", "class": "RBC", "box": [90, 40, 110, 60],
         "finding": "not a cell"})
    plain = merge([root], tmp_path / "plain", 0.0)
    fixed = merge([root], tmp_path / "fixed", 0.0, load_label_fixes(fixes))
    out = tmp_path / "fixed"
    assert labels_of(out, "train", sha["t0"]) == [[0, 0.25, 0.5, 0.2, 0.4],
                                                  [1, 0.75, 0.5, 0.1, 0.2]]
    assert labels_of(out, "train", sha["t1"]) == [[0, 0.15, 0.5, 0.2, 0.8]]
    assert labels_of(out, "val", sha["v0"]) == labels_of(tmp_path / "plain", "val", sha["v0"])
    assert fixed.data_digest != plain.data_digest
    recorded = json.loads((out / "merge.json").read_text())["label_fixes"]
    assert recorded["applied"] == 3 and recorded["sha256"] == file_sha256(fixes)
    assert json.loads((tmp_path / "plain" / "merge.json").read_text())["label_fixes"] is None


@pytest.mark.parametrize(("fix", "message"), [
    ({"image": "f" * 16}, "no merged image has this content hash"),
    ({"image": "{v0}"}, "the image is in val; val labels are not corrected"),
    ({"box": [0, 0, 30, 30]}, "no WBC boxes match [0.0, 0.0, 30.0, 30.0]"),
    ({"class": "RBC"}, "no RBC boxes match"),
    ({"box": [140, 40, 160, 260]}, "lies outside the 200x100 image"),
])
def test_a_fix_that_does_not_apply_is_an_error_naming_it(tmp_path, dataset, fix, message):
    root, sha = dataset
    entry = {"image": sha["t0"][:16], "action": "remove", "class": "WBC",
             "box": [140, 40, 160, 60], "finding": "x", **fix}
    entry["image"] = entry["image"].format(v0=sha["v0"][:16])
    fixes = fix_file(tmp_path / "fixes.json", entry)
    with pytest.raises(DatasetError, match=r"fixes\.0") as err:
        merge([root], tmp_path / "out", 0.0, load_label_fixes(fixes))
    assert message in str(err.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({"action": "relabel"}, "'to' is required by relabel and only there"),
    ({"action": "remove", "to": "RBC"}, "'to' is required by relabel and only there"),
    ({"action": "remove", "class": "Monocyte"}, "fixes.0.class"),
    ({"action": "move"}, "fixes.0.action"),
    ({"action": "remove", "finding": ""}, "fixes.0.finding"),
    ({"action": "add", "box": [5, 0, 1, 1]}, "fixes.0.box"),
])
def test_a_malformed_fix_file_is_refused_naming_the_entry(tmp_path, entry, message):
    base = {"image": "a" * 16, "class": "WBC", "box": [0, 0, 1, 1], "finding": "x"}
    fixes = fix_file(tmp_path / "fixes.json", {**base, **entry})
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_label_fixes(fixes)


def test_the_bundled_fix_file_is_well_formed():
    fixes = load_label_fixes(Path(__file__).parents[2] / "training" / "label-fixes"
                             / "detector-train.json")
    assert len(fixes.fixes) == len({(f.image, tuple(f.box)) for f in fixes.fixes}) > 0


def test_a_fix_matching_two_boxes_is_refused_as_ambiguous(tmp_path, dataset):
    root, sha = dataset
    label = root / "labels" / "train" / "t1.txt"
    label.write_text(label.read_text() * 2)  # the same red cell labelled twice
    fixes = fix_file(tmp_path / "fixes.json",
                     {"image": sha["t1"][:16], "action": "remove", "class": "RBC",
                      "box": [90.5, 40.5, 110.5, 60.5], "finding": "x"})  # IoU 0.91
    with pytest.raises(DatasetError, match=r"2 RBC boxes match .* \(ambiguous\)"):
        merge([root], tmp_path / "out", 0.0, load_label_fixes(fixes))
