"""White-cell figures against the val labels as they are and as corrected by the review in
`docs/models/detector-val-wbc-audit.json`, and the ceiling a flawless detector reaches on
the labels as they are (every real white cell found at full score, nothing else).

The official figures stay those of `hemascope eval` on the labels as they are; this script
says how much of the gap to the white-cell targets is the labels'. The corrections are one
reviewer's calls by eye: "certain" uses only the clear ones, "all" adds the doubtful ones.

    python scripts/wbc_label_audit.py runs/detector-640/data --json docs/bench/wbc-label-audit.json

DATA is a merged set without label fixes (run 3's `runs/detector-640/data`): the audit names
its data digest, and fixes to training labels change that digest, not val.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES
from edge.config import BUNDLED_DETECTOR
from edge.core import labels
from edge.core.detections import Detections
from edge.core.labels import DETECTOR_CLASSES
from edge.inference.manifest import load_verified
from training.evaluate import predict_split
from training.metrics import box_iou, count_errors, detection_metrics

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "docs" / "models" / "detector-val-wbc-audit.json"
WBC = DETECTOR_CLASSES.index(labels.WBC)


def check_data(data: Path, audit: dict[str, Any]) -> None:
    """Refuse a merged set other than the one the audit was made on."""
    merge = json.loads((data / "merge.json").read_text())
    if merge["data_digest"] != audit["data_digest"]:
        raise SystemExit(f"error: {data} is not the set the audit was made on (data digest "
                         f"{merge['data_digest'][:12]}, audit {audit['data_digest'][:12]})")


def corrected_truths(names: list[str], truths: list[Detections], audit: dict[str, Any],
                     certain_only: bool) -> list[Detections]:
    """The truths with the audit's corrections applied, each checked against the label file."""
    by_stem = {Path(n).stem: t for n, t in zip(names, truths, strict=True)}
    keep = {stem: np.ones(len(t), bool) for stem, t in by_stem.items()}
    added: dict[str, list[list[float]]] = {stem: [] for stem in by_stem}
    for c in audit["corrections"]:
        if certain_only and not c["certain"]:
            continue
        stem = c["image"]
        if stem not in by_stem:
            raise SystemExit(f"error: audited image {stem} is not in the {audit['split']} split")
        if c["action"] == "add":
            added[stem].append(c["box"])
            continue
        truth, row = by_stem[stem], int(c["line"])
        box = np.array([c["box"]], np.float32)
        if row >= len(truth) or truth.class_id[row] != WBC \
                or box_iou(truth.xyxy[row:row + 1], box)[0, 0] < 0.9:
            raise SystemExit(f"error: line {row} of {stem}'s labels is not the audited "
                             f"white-cell box {c['box']}")
        keep[stem][row] = False
    out = []
    for stem, truth in by_stem.items():
        kept, boxes = truth[keep[stem]], np.array(added[stem], np.float32).reshape(-1, 4)
        out.append(Detections.from_arrays(np.concatenate([kept.xyxy, boxes]),
                                          np.concatenate([kept.class_id,
                                                          np.full(len(boxes), WBC)])))
    return out


def wbc_figures(preds: list[Detections], truths: list[Detections], classes: list[str],
                threshold: float) -> dict[str, float]:
    det = detection_metrics(preds, truths, classes)
    counts = count_errors(preds, truths, classes, threshold)[classes[WBC]]
    return {"AP50": det.ap50[classes[WBC]], "AP50-95": det.ap50_95[classes[WBC]],
            "exact_share": counts["exact_share"],
            "miscounted_fields": round((1 - counts["exact_share"]) * len(preds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the merged detector set (`hemascope train "
                                            "detect` writes it beside the run)")
    ap.add_argument("--model", type=Path, action="append",
                    help="an exported detector (repeatable; default: the bundled one)")
    ap.add_argument("--audit", type=Path, default=AUDIT)
    ap.add_argument("--json", type=Path, help="write results here")
    args = ap.parse_args()
    audit = json.loads(args.audit.read_text())
    check_data(args.data, audit)
    split = audit["split"]
    names = sorted(p.name for p in (args.data / "images" / split).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)  # the order of predict_split
    models = args.model or [BUNDLED_DETECTOR]
    result: dict[str, Any] = {"data": str(args.data), "split": split,
                              "audit": {"file": args.audit.name, "sha256": hashlib.sha256(
                                  args.audit.read_bytes()).hexdigest()}, "models": {}}
    variants = {"certain": True, "all": False}  # name -> only the certain corrections
    fixed: dict[str, list[Detections]] = {}  # variant -> corrected truths (the same per model)
    for model in models:
        preds, truths, classes, _ = predict_split(model, args.data, split)
        if not fixed:
            fixed = {name: corrected_truths(names, truths, audit, certain_only)
                     for name, certain_only in variants.items()}
        manifest = load_verified(model)
        threshold = manifest.thresholds.confidence
        figures = {"labels_as_they_are": wbc_figures(preds, truths, classes, threshold)}
        for name, corrected in fixed.items():
            figures[f"labels_corrected_{name}"] = wbc_figures(preds, corrected, classes, threshold)
        result["models"][str(model)] = {"sha256": manifest.sha256,
                                        "operating_threshold": threshold, **figures}
    for name, real in fixed.items():
        result[f"flawless_detector_{name}"] = wbc_figures(real, truths, classes, 0.5)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
