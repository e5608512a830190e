"""Site calibration measured on laboratories a model never saw (writes JSON).

For each (model, lab) pair — a leave-one-lab-out model and the lab it was not trained on —
the lab's crops go through `edge.inference.classifier` (with the lab's zoom-out), each in its
eight dihedral views; then, for several seeded draws, N of them play the site's first
reviewed cells: the head is fitted to them exactly as `hemascope calibrate wbc` does (all
their views; `--views 1`: the crops as they are, the method until session 10), and scored on
the lab's other crops as they are (the head reads each crop's colour histograms beside its
embedding, as the command's does; `--no-colour`: the embedding alone, the method until
session 18; `--embedding-pull P`: the base head's weights and biases pulled towards it P
times as hard as the colour weights, session 19's study). Also reported: the model before
calibration, and the time to calibrate on 200 cells (their embeddings and histograms, then
the fit and cross-validation, as the command does) in one process.

`--levers` also measures, with 50 reviewed cells, on the embedding alone (session 12's
study), what might lift calibration beyond that fit (docs/models/classifiers.md): the stain
shift measured on the reviewed cells (their training class means minus their embeddings,
applied to every crop before the fit), self-training on an unlabelled pool of the site's
other crops (as a calibration session's unreviewed cells), and the fit's ceiling with 300
and 600 reviewed cells. Every lever is scored on the same crops: neither reviewed nor in the pool.

  D=../shared/datasets/classification
  python scripts/site_calibration_eval.py --pair runs/lolo-lisc/classifier.onnx $D/wbc-lisc \\
      --pair runs/lolo-jtsc/classifier.onnx $D/wbc-jtsc:zoom_out=1.8 \\
      --json docs/bench/site-calibration.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge.inference.classifier import Classifier
from edge.inference.head import softmax
from edge.site.calibrate import (
    DEFAULT_PULL,
    cross_validated_accuracy,
    fit_views,
    logits,
    predict,
    site_inputs,
    start_head,
    view_embeddings,
)
from training.classify_data import Source, held_out_lab


def levers(x: np.ndarray, y: np.ndarray, w0: np.ndarray, means: np.ndarray | None,
           draws: int, reviewed: int = 50, threshold: float = 0.9) -> dict[str, object]:
    """Accuracy (mean, worst of `draws`) of each calibration lever: `reviewed` cells are
    labelled, a pool of up to 200 more is unlabelled, the rest are scored as they are."""
    if means is None:
        raise SystemExit("--levers needs the model's stain reference (eval --set-reference)")
    pool_size = min(200, (len(y) - reviewed) // 2)
    scores: dict[str, list[float]] = {}
    for seed in range(draws):
        pick = np.random.default_rng(seed).permutation(len(y))
        tr, pool = pick[:reviewed], pick[reviewed:reviewed + pool_size]
        test = pick[reviewed + pool_size:]

        def score(name: str, w: np.ndarray, xs: np.ndarray, test: np.ndarray = test) -> None:
            scores.setdefault(name, []).append(float((predict(w, xs[test, 0]) == y[test]).mean()))

        score("base", w0, x)
        score("fit (shipped)", fit_views(x[tr], y[tr], w0), x)
        shifted = x + (means[y[tr]][:, None, :] - x[tr]).mean(axis=(0, 1))
        score("stain shift alone", w0, shifted)
        fitted = fit_views(shifted[tr], y[tr], w0)
        score("stain shift + fit", fitted, shifted)
        probs = softmax(logits(fitted, shifted[pool, 0]))
        confident = probs.max(axis=1) >= threshold
        sure, guess = pool[confident], probs.argmax(axis=1)[confident]
        score(f"stain shift + fit + self-training (pool {pool_size}, p >= {threshold})",
              fit_views(np.concatenate([shifted[tr], shifted[sure]]),
                        np.concatenate([y[tr], guess]), w0), shifted)
        for n in (300, 600):
            if reviewed + pool_size + n < len(y):
                score(f"fit with {n} reviewed (ceiling; scored on the rest)",
                      fit_views(x[test[:n]], y[test[:n]], w0), x, test[n:])
    return {name: {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4)}
            for name, v in scores.items()}


def calibrated(classifier: Classifier, emb: np.ndarray, colours: np.ndarray, y: np.ndarray,
               train: np.ndarray, test: np.ndarray, colour: bool = True,
               embedding_pull: float | None = None) -> float:
    """Accuracy on the `test` crops (as they are) of the head fitted on the `train` crops'
    views as the command fits it (colour inputs scaled over those crops), or on their
    embeddings alone."""
    assert classifier.head is not None
    w, b = classifier.head.arrays()
    if not colour:
        w0 = np.concatenate([w, b[:, None]], axis=1).astype(np.float64)
        return float((predict(fit_views(emb[train], y[train], w0), emb[test, 0])
                      == y[test]).mean())
    x, mean, scale = site_inputs(emb[train], colours[train])
    pull: float | np.ndarray = DEFAULT_PULL
    if embedding_pull is not None:
        pull = np.full(x.shape[2] + 1, embedding_pull)
        pull[emb.shape[2]:-1] = DEFAULT_PULL
    fitted = fit_views(x, y[train], start_head(classifier.head, mean, scale), pull)
    scored = np.concatenate([emb[test, 0], (colours[test] - mean) / scale], axis=1)
    return float((predict(fitted, scored) == y[test]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", nargs=2, action="append", required=True,
                    metavar=("MODEL", "LAB[:OPTIONS]"))
    ap.add_argument("--cells", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--views", type=int, choices=(1, 8), default=8,
                    help="views of each reviewed crop the head is fitted on")
    ap.add_argument("--no-colour", action="store_true",
                    help="fit on the embedding alone (calibration until session 18)")
    ap.add_argument("--embedding-pull", type=float, metavar="P",
                    help="pull the base head's weights on the embedding, and its biases, by P "
                         "(the colour weights by the command's pull, 1)")
    ap.add_argument("--levers", action="store_true",
                    help="also measure the stain-shift, self-training and ceiling levers")
    ap.add_argument("--limit", type=int, default=0,
                    help="score a seeded random sample of this many crops of each lab (0: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, object] = {"cells": args.cells, "draws": args.draws, "views": args.views,
                              "colour": not args.no_colour,
                              "embedding_pull": args.embedding_pull,
                              "limit": args.limit, "labs": {}}
    for model_path, spec in args.pair:
        classifier = Classifier(Path(model_path), threads=1)
        pixels, y = held_out_lab(spec, classifier.classes, classifier.size, args.limit)
        assert classifier.head is not None, f"{model_path} has no head"
        emb = view_embeddings(classifier, list(pixels))[:, :args.views].astype(np.float64)
        colours = classifier.colours(list(pixels)).astype(np.float64)
        w, b = classifier.head.arrays()
        w0 = np.concatenate([w, b[:, None]], axis=1).astype(np.float64)
        row: dict[str, object] = {"model": Path(model_path).name, "images": len(y),
                                  "before": round(float((predict(w0, emb[:, 0]) == y).mean()), 4)}
        for n in args.cells:
            scores = []
            for seed in range(args.draws):
                pick = np.random.default_rng(seed).permutation(len(y))
                scores.append(calibrated(classifier, emb, colours, y, pick[:n], pick[n:],
                                         colour=not args.no_colour,
                                         embedding_pull=args.embedding_pull))
            row[f"after_{n}"] = {"mean": round(float(np.mean(scores)), 4),
                                 "min": round(float(np.min(scores)), 4)}
        if args.levers:
            row["levers_50"] = levers(emb, y, w0, classifier.head.means(), args.draws)
        sub = np.random.default_rng(0).permutation(len(y))[:200]
        t0 = time.perf_counter()
        crops = [pixels[i] for i in sub]
        x, mean, scale = site_inputs(view_embeddings(classifier, crops).astype(np.float64),
                                     classifier.colours(crops).astype(np.float64))
        t1 = time.perf_counter()
        w_start = start_head(classifier.head, mean, scale)
        fit_views(x, y[sub], w_start)
        cross_validated_accuracy(x, y[sub], w_start)
        row["seconds_200"] = {"embeddings": round(t1 - t0, 2),
                              "fit_and_cross_validation": round(time.perf_counter() - t1, 2)}
        name = Source.parse(spec).name
        out["labs"][name] = row  # type: ignore[index]
        print(name, json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
