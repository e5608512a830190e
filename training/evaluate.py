"""Evaluate an exported detector through `edge` itself, on a YOLO dataset split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.core.detections import Detections
from edge.core.labels import RBC
from edge.inference.detector import Detector
from edge.inference.manifest import ModelManifest, load_verified, manifest_path
from edge.pipeline.scale import rbc_diameter
from training.metrics import choose_threshold, count_errors, detection_metrics

EVAL_CONFIDENCE = 0.001  # keep low-score boxes so the precision-recall curve is complete


def load_truth(label: Path, width: int, height: int) -> Detections:
    rows = [line.split() for line in label.read_text().splitlines() if line.strip()] \
        if label.is_file() else []
    if not rows:
        return Detections.empty()
    arr = np.array(rows, dtype=np.float32)
    cx, cy, w, h = arr[:, 1] * width, arr[:, 2] * height, arr[:, 3] * width, arr[:, 4] * height
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return Detections.from_arrays(xyxy, arr[:, 0].astype(np.int64))


def predict_split(model: Path, data: Path, split: str,
                  progress: Callable[[int, int], None] | None = None,
                  backend: str | None = None, delegate: str = "none"
                  ) -> tuple[list[Detections], list[Detections], list[str],
                             list[tuple[int, int]]]:
    """Predictions, truths and (height, width) of every image of a split, through the
    runtime `backend` (default: the one the model's manifest names)."""
    runtime = backend or load_verified(model).runtime
    detector = Detector(model, runtime, confidence=EVAL_CONFIDENCE, delegate=delegate,
                        allow_failed_gate=True)
    images = sorted(p for p in (data / "images" / split).iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in {data / 'images' / split}")
    preds, truths, shapes = [], [], []
    for i, path in enumerate(images):
        image = read_image(path)
        shapes.append(image.shape[:2])
        preds.append(detector(image).detections)
        truths.append(load_truth(data / "labels" / split / f"{path.stem}.txt",
                                 image.shape[1], image.shape[0]))
        if progress:
            progress(i + 1, len(images))
    return preds, truths, detector.classes, shapes


RULER_PERCENTILES = (5, 95)


def training_rulers(truths: list[Detections], shapes: list[tuple[int, int]], classes: list[str],
                    manifest: ModelManifest) -> tuple[float, float] | None:
    """The range (5th to 95th percentile over fields) of the labelled red cells' median
    diameter in the model's input pixels (after the letterbox): the scales the detector was
    trained and validated at, which the runner brings other fields into."""
    if RBC not in classes:
        return None
    size = (manifest.input.height, manifest.input.width)
    rulers = [d * min(size[0] / h, size[1] / w) for t, (h, w) in zip(truths, shapes, strict=True)
              if (d := rbc_diameter(t, classes.index(RBC), (h, w))) is not None]
    if not rulers:
        return None
    lo, hi = np.percentile(rulers, RULER_PERCENTILES)
    return round(float(lo), 1), round(float(hi), 1)


def evaluate_detector(model: Path, data: Path, split: str = "val", set_threshold: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """mAP and counting errors of `model` on DATA/images/SPLIT.

    With set_threshold, the operating score threshold is chosen on this split and written,
    with the metrics, into the model's manifest (only allowed on a validation split).
    """
    preds, truths, classes, shapes = predict_split(model, data, split, progress)
    mpath = manifest_path(model)
    manifest = ModelManifest.model_validate(json.loads(mpath.read_text()))
    threshold = choose_threshold(preds, truths, classes) if set_threshold \
        else manifest.thresholds.confidence
    det = detection_metrics(preds, truths, classes)
    result = {
        "model": model.name, "sha256": manifest.sha256, "data": str(data), "split": split,
        "images": len(preds), "mAP50": det.map50, "mAP50-95": det.map50_95,
        "AP50": det.ap50, "AP50-95": det.ap50_95,
        "operating_threshold": threshold,
        "counting": count_errors(preds, truths, classes, threshold),
    }
    if set_threshold:
        if split != "val":
            raise ValueError("the operating threshold may only be chosen on the val split")
        manifest.thresholds.confidence = threshold
        manifest.input.rbc_diameter = training_rulers(truths, shapes, classes, manifest)
        manifest.metrics = {"val": result}
        mpath.write_text(manifest.model_dump_json(indent=2) + "\n")
    return result
