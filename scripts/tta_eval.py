"""Test-time adaptation measured on laboratories a model never saw (writes JSON).

A lever not shipped yet: shift each crop's embedding by (training mean - session mean)
before the head, the session's own unlabelled crops giving its mean. Measured for each
leave-one-lab-out model on its held-out lab: as is, with the whole lab as one session, on
random 100-crop sessions, and online in a random order with a prior of K pseudo-crops at the
training mean (what a runner could do field by field). The training mean is the mean over
training labs of their class-balanced mean embedding (up to 40 crops per class).

  python scripts/tta_eval.py --runs runs --json docs/bench/tta.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.inference.classifier import Classifier
from training.classify_data import Source, load_pixels, read_class_folders

D = Path("../shared/datasets/classification")
LOLO = {"lolo-lisc": (["pbc-8class", "wbc-jtsc:zoom_out=1.8"], "wbc-lisc"),
        "lolo-jtsc": (["pbc-8class", "wbc-lisc"], "wbc-jtsc:zoom_out=1.8"),
        "lolo-pbc": (["wbc-jtsc:zoom_out=1.8", "wbc-lisc"], "pbc-8class")}


def _lab(model: Classifier, spec: str) -> tuple[np.ndarray, np.ndarray]:
    src = Source.parse(str(D / spec))
    data = read_class_folders([Source(src.path, "val", src.zoom_out)], 0.2, model.classes,
                              skip_unknown=True)
    items = data.split("all")
    return (model.embeddings(list(load_pixels(items, model.size, data.sources))),
            np.array([it.label for it in items]))


def _balanced_mean(e: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.mean([e[rng.permutation(np.flatnonzero(y == c))[:40]].mean(0)
                    for c in np.unique(y)], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--prior", type=int, default=20, help="K pseudo-crops at the training mean")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out: dict[str, object] = {"prior": args.prior}
    for run, (train, held) in LOLO.items():
        model = Classifier(args.runs / run / "classifier.onnx", threads=2)
        assert model.head is not None
        w, b = model.head.arrays()
        mu = np.mean([_balanced_mean(*_lab(model, spec), rng) for spec in train], axis=0)
        e, y = _lab(model, held)

        def acc(emb: np.ndarray, truth: np.ndarray, w: np.ndarray = w,
                b: np.ndarray = b) -> float:
            return float(((emb @ w.T + b).argmax(1) == truth).mean())

        sessions, online = [], []
        for _ in range(20):
            idx = rng.permutation(len(y))[:100]
            sessions.append(acc(e[idx] - e[idx].mean(0) + mu, y[idx]))
            running = np.cumsum(e[idx], axis=0) + args.prior * mu
            est = running / (np.arange(1, len(idx) + 1) + args.prior)[:, None]
            online.append(acc(e[idx] - est + mu, y[idx]))
        out[run] = {"held_out": held, "as_is": round(acc(e, y), 4),
                    "whole_lab_session": round(acc(e - e.mean(0) + mu, y), 4),
                    "sessions_of_100": round(float(np.mean(sessions)), 4),
                    "online_sessions_of_100": round(float(np.mean(online)), 4)}
        print(run, json.dumps(out[run]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
