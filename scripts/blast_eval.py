"""The differential's blast call, measured (issue #21): sensitivity on blast crops and
specificity on the other white cells of ALL fields held out by field (the val crops of
`scripts/blast_crops.py`), and the false-blast rate on the normal white cells of every other
lab (their val split, or all of a lab given with :split=val; platelet images left out). Each
crop is labelled as the runner labels a white-cell box (never a platelet). Also how well
the blast probability alone ranks the held-out ALL cells (ROC AUC) and what each operating
point would give: the specificity at the threshold that reaches the issue's sensitivity
(0.95), and the sensitivity at the one that reaches its specificity (0.90). Writes JSON.

    python scripts/blast_eval.py edge/models/wbc-differential.onnx \
        --all-cells runs/all-cells/val --normal ../shared/datasets/classification/pbc-8class \
        --normal ../shared/datasets/classification/wbc-jtsc:zoom_out=1.8 \
        --json docs/bench/blast.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.core.labels import NOT_WHITE_CELLS
from edge.inference.classifier import Classifier
from edge.pipeline.second_stage import white_cell_class
from training.classify_data import Source, load_pixels, read_class_folders

BLAST = "blast"


def calls(model: Classifier, source: Source, split: str
          ) -> tuple[list[str], list[str], np.ndarray]:
    """(truth, call, blast probability) of every white-cell crop of `split` of one lab (a
    platelet image is left out: the runner never gets a white-cell box there)."""
    data = read_class_folders([source], 0.2, model.classes, skip_unknown=True)
    items = [it for it in data.split(split) if data.classes[it.label] not in NOT_WHITE_CELLS]
    probs = model.probabilities(list(load_pixels(items, model.size, [source])))
    return ([data.classes[it.label] for it in items],
            [model.classes[white_cell_class(model.classes, p)] for p in probs],
            probs[:, model.classes.index(BLAST)])


def roc(p_blast: np.ndarray, is_blast: np.ndarray, sensitivity: float = 0.95,
        specificity: float = 0.90) -> dict[str, float]:
    """ROC AUC of the blast probability, and the two operating points the issue asks for."""
    pos, neg = np.sort(p_blast[is_blast]), np.sort(p_blast[~is_blast])
    # AUC: the chance a blast scores above another cell (ties count half)
    above = np.searchsorted(neg, pos, side="left") + np.searchsorted(neg, pos, side="right")
    t_sens = float(np.quantile(pos, 1 - sensitivity, method="lower"))
    t_spec = float(np.quantile(neg, specificity, method="higher"))
    return {"auc": round(float(above.sum() / (2 * len(pos) * len(neg))), 4),
            f"threshold_at_sensitivity_{sensitivity}": round(t_sens, 5),
            f"specificity_at_sensitivity_{sensitivity}": round(float((neg < t_sens).mean()), 4),
            f"threshold_at_specificity_{specificity}": round(t_spec, 5),
            f"sensitivity_at_specificity_{specificity}": round(float((pos > t_spec).mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--all-cells", type=Path, required=True,
                    help="class folders of white cells from held-out ALL fields")
    ap.add_argument("--normal", action="append", default=[], metavar="DATA[:OPTIONS]",
                    help="a lab of normal white cells (its val split; :split=val for all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = Classifier(args.model)
    if BLAST not in model.classes:
        raise SystemExit(f"{args.model.name} has no {BLAST!r} class")
    truth, said, p_blast = calls(model, Source(args.all_cells, "val"), "all")
    t, s = np.array(truth), np.array(said)
    blasts, others = t == BLAST, t != BLAST
    result: dict[str, object] = {
        "model": args.model.name, "sha256": model.sha256,
        "all_fields_held_out": {
            "blast_crops": int(blasts.sum()), "other_crops": int(others.sum()),
            "sensitivity": round(float((s[blasts] == BLAST).mean()), 4),
            "specificity": round(float((s[others] != BLAST).mean()), 4),
            "blasts_called": {c: int((s[blasts] == c).sum()) for c in np.unique(s[blasts])},
            "others_called_blast": {c: int(((t == c) & (s == BLAST)).sum())
                                    for c in np.unique(t[others])},
            "blast_probability": roc(p_blast, blasts)}}
    normal = {}
    for spec in args.normal:
        source = Source.parse(spec)
        truth, said, _ = calls(model, source, "val")
        called, truth_of = np.array(said) == BLAST, np.array(truth)
        normal[source.name] = {"crops": len(said),
                               "false_blast_rate": round(float(np.mean(called)), 4),
                               "called_blast": {c: int((called & (truth_of == c)).sum())
                                                for c in sorted(set(truth))}}
    result["normal_labs"] = normal
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
