"""The WBC differential as the runner computes it, on the val split of the PBC set: detector
-> white-cell box -> crop sized by the red-cell ruler -> classifier. Unlike `hemascope eval`
(the classifier on whole training-style images), this measures the crop geometry too.

    python scripts/two_stage_eval.py ../shared/datasets/classification/pbc-8class \
        --json docs/bench/two-stage-wbc.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.capture.folder import read_image
from edge.config import ClassifiersConfig, Profile
from edge.inference.detector import Detector
from edge.pipeline.second_stage import FieldClassifiers
from training.classify_data import read_class_folders
from training.classify_metrics import classification_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the class-folder set the classifier trained on")
    ap.add_argument("--json", type=Path, help="write results here")
    args = ap.parse_args()
    profile = Profile()
    detector = Detector(profile.model.detector)
    classifiers = FieldClassifiers(ClassifiersConfig(wbc=True), detector.classes)
    classes = classifiers.wbc.classes
    items = [it for it in read_class_folders(args.data).split("val")
             if classes[it.label] != "platelet"]  # a platelet image has no white-cell box
    probs, truth, missed = [], [], 0
    for it in items:
        image = read_image(it.path)
        det = detector(image).detections
        labels = classifiers(image, det)
        if not labels.cells:
            missed += 1
            continue
        h, w = image.shape[:2]
        centre = np.array([w / 2, h / 2])
        boxes = det.xyxy[[c.cell for c in labels.cells]]
        nearest = int(np.argmin(np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre,
                                               axis=1)))
        cell = labels.cells[nearest]
        p = np.zeros(len(classes), np.float32)
        p[classes.index(cell.label)] = 1.0
        probs.append(p)
        truth.append(it.label)
    report = classification_report(np.array(probs), np.array(truth), classes)
    result = {"data": str(args.data), "split": "val", "images": len(items),
              "no_white_cell_detected": missed,
              "accuracy_on_detected": report["accuracy"],
              "accuracy_counting_misses_as_errors":
                  report["accuracy"] * len(truth) / len(items),
              "per_class_recall": {k: v["recall"] for k, v in report["per_class"].items()
                                   if v["support"]},
              "detector_sha256": detector.sha256, "classifier_sha256": classifiers.wbc.sha256,
              "crop_rbc_diameters": classifiers.config.crop_rbc_diameters}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
