"""Optics robustness: the detector, the red-cell ruler and quality control on real fields
seen through other magnifications (writes JSON).

Conditions on TXL-PBC val fields (labels scaled with the pixels): `x0.5` ... `x2` resample
the field (fewer or more pixels per cell, same view); `mosaic2x2` tiles four fields and halves
them (a 4x wider view in the same pixels, about 70-90 red cells per field, like a lower-power
objective); `zoom2x` doubles the centre of a field (a higher-power objective). Reported per
condition: AP50 per class, white-cell count exact share, red-cell total count error, the
ruler (median red-cell diameter) against the expected one, and the share of fields quality
control accepts with default settings.

  python scripts/optics_eval.py ../shared/datasets/detection/txl-pbc \
      --model edge/models/detector.onnx --json docs/bench/optics.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.config import QCConfig
from edge.core.detections import Detections
from edge.core.labels import RBC, WBC
from edge.inference.detector import Detector
from edge.pipeline.qc import assess_cells, assess_image, cell_scores
from edge.pipeline.scale import detect_at_training_scale, rbc_diameter
from training.evaluate import EVAL_CONFIDENCE, load_truth
from training.metrics import count_errors, detection_metrics

Field = tuple[np.ndarray, Detections]


def _resample(field: Field, s: float) -> Field:
    image, truth = field
    h, w = image.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, Detections.from_arrays(truth.xyxy * s, truth.class_id)


def _mosaic(fields: list[Field]) -> Field:
    """Four fields 2x2 (each resized to the first's size), then halved."""
    h, w = fields[0][0].shape[:2]
    tiles, boxes, ids = [], [], []
    for k, (image, truth) in enumerate(fields):
        sy, sx = h / image.shape[0], w / image.shape[1]
        tiles.append(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
        oy, ox = (k // 2) * h, (k % 2) * w
        boxes.append(truth.xyxy * [sx, sy, sx, sy] + [ox, oy, ox, oy])
        ids.append(truth.class_id)
    big = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    return _resample((big, Detections.from_arrays(np.concatenate(boxes).astype(np.float32),
                                                   np.concatenate(ids))), 0.5)


def _zoom2x(field: Field) -> Field:
    """The centre half of the field, doubled; boxes cut by the edge keep their inside part
    when at least half of them is inside."""
    image, truth = field
    h, w = image.shape[:2]
    y0, x0 = h // 4, w // 4
    crop = image[y0:y0 + h // 2, x0:x0 + w // 2]
    b = truth.xyxy - [x0, y0, x0, y0]
    clipped = np.clip(b, 0, [w // 2, h // 2, w // 2, h // 2])
    area = np.prod(b[:, 2:] - b[:, :2], axis=1)
    keep = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1) >= 0.5 * area
    return _resample((crop, Detections.from_arrays(clipped[keep].astype(np.float32),
                                                   truth.class_id[keep])), 2.0)


CONDITIONS: dict[str, Callable[[list[Field], int], Field]] = {  # x1 first: the ruler's base
    "x1": lambda f, i: f[i],
    "x0.5": lambda f, i: _resample(f[i], 0.5),
    "x0.75": lambda f, i: _resample(f[i], 0.75),
    "x1.5": lambda f, i: _resample(f[i], 1.5),
    "x2": lambda f, i: _resample(f[i], 2.0),
    "mosaic2x2": lambda f, i: _mosaic([f[(i + k) % len(f)] for k in range(4)]),
    "zoom2x": lambda f, i: _zoom2x(f[i]),
}
EXPECTED_SCALE = {"x0.5": 0.5, "x0.75": 0.75, "x1": 1.0, "x1.5": 1.5, "x2": 2.0,
                  "mosaic2x2": 0.5, "zoom2x": 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="YOLO dataset (images/val, labels/val)")
    ap.add_argument("--model", type=Path, default=Path("edge/models/detector.onnx"))
    ap.add_argument("--limit", type=int, default=0, help="first N val fields only (0: all)")
    ap.add_argument("--no-rescale", action="store_true",
                    help="run the detector on the field as given (the old behaviour)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = sorted(p for p in (args.data / "images" / "val").iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)[:args.limit or None]
    fields: list[Field] = []
    for p in paths:
        image = read_image(p)
        fields.append((image, load_truth(args.data / "labels" / "val" / f"{p.stem}.txt",
                                         image.shape[1], image.shape[0])))
    detector = Detector(args.model, confidence=EVAL_CONFIDENCE)
    threshold = detector.manifest.thresholds.confidence
    rbc_id = detector.classes.index(RBC)
    qc = QCConfig()
    base_ruler: list[float | None] = []
    result: dict[str, object] = {"model": args.model.name, "sha256": detector.sha256,
                                 "fields": len(fields), "rescale": not args.no_rescale,
                                 "conditions": {}}
    for name, make in CONDITIONS.items():
        preds, truths, accepted, ratios, densities = [], [], 0, [], []
        for i in range(len(fields)):
            image, truth = make(fields, i)
            det = (detector(image).detections if args.no_rescale
                   else detect_at_training_scale(detector, image))
            preds.append(det)
            truths.append(truth)
            kept = det[det.confidence >= threshold]
            ok = (assess_image(image, qc).accepted
                  and assess_cells(kept, image.shape[:2], qc, rbc_id).accepted)
            accepted += ok
            densities.append(cell_scores(kept, image.shape[:2], rbc_id)["density"])
            ruler = rbc_diameter(kept, rbc_id, image.shape[:2])
            if name == "x1":
                base_ruler.append(ruler)
            elif len(base_ruler) > i and ruler and base_ruler[i] and name != "mosaic2x2":
                ratios.append(ruler / (base_ruler[i] * EXPECTED_SCALE[name]))
        m = detection_metrics(preds, truths, detector.classes)
        counts = count_errors(preds, truths, detector.classes, threshold)
        result["conditions"][name] = {  # type: ignore[index]
            "AP50": {c: round(float(v), 4) for c, v in m.ap50.items()},
            "mAP50": round(float(m.map50), 4),
            "wbc_exact_share": round(counts[WBC]["exact_share"], 4),
            "rbc_total_error": round(counts[RBC]["total_relative_error"], 4),
            "qc_accepted_share": round(accepted / len(fields), 4),
            "ruler_ratio_median": round(float(np.median(ratios)), 3) if ratios else None,
            "density_max": round(max(densities), 3),
        }
        print(name, json.dumps(result["conditions"][name]))  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
