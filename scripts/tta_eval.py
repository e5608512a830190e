"""Test-time adaptation and the stain check, measured on laboratories a model never saw.

Each leave-one-lab-out model on its held-out lab, in random sessions of 100 crops: accuracy
as is; relabelled after a mix-blind shift (the session's mean embedding moved onto the
training labs' balanced mean); and after the stain shift of `edge.inference.stain` (moved onto
the training mean of the session's own estimated class mix). Pathological smears (one class
at 50 % of 100 crops): the error of that class's estimated share each way, on the held-out lab
and on the training labs. And the stain distance: the largest the training labs' own sessions
reach, against the held-out lab's. The reference is each class's mean embedding over the
training labs (up to 40 crops per class and lab). Writes JSON.

  python scripts/tta_eval.py --runs runs --json docs/bench/tta.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.inference.classifier import Classifier
from edge.inference.stain import estimate
from training.classify_data import held_out_lab

D = Path("../shared/datasets/classification")
LOLO = {"lolo-lisc": (["pbc-8class", "wbc-jtsc:zoom_out=1.8"], "wbc-lisc"),
        "lolo-jtsc": (["pbc-8class", "wbc-lisc"], "wbc-jtsc:zoom_out=1.8"),
        "lolo-pbc": (["wbc-jtsc:zoom_out=1.8", "wbc-lisc"], "pbc-8class")}


def _lab(model: Classifier, spec: str) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = held_out_lab(str(D / spec), model.classes, model.size)
    return model.embeddings(list(pixels)), labels


def _class_means(e: np.ndarray, y: np.ndarray, classes: int,
                 rng: np.random.Generator) -> np.ndarray:
    """C x D: each class's mean embedding (up to 40 crops; NaN for a class the lab lacks)."""
    out = np.full((classes, e.shape[1]), np.nan, np.float32)
    for c in np.unique(y):
        out[c] = e[rng.permutation(np.flatnonzero(y == c))[:40]].mean(0)
    return out


def plain_shift(e: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Move the session's mean embedding onto the training mean (blind to its class mix)."""
    return e - e.mean(0) + mu.mean(0)


def _skewed(y: np.ndarray, cls: int, share: float, n: int,
            rng: np.random.Generator) -> np.ndarray:
    """n crops of which `share` are of class `cls`, the rest drawn from the other classes."""
    k = round(n * share)
    inside = rng.choice(np.flatnonzero(y == cls), k, replace=k > np.sum(y == cls))
    return np.concatenate([inside, rng.choice(np.flatnonzero(y != cls), n - k, replace=False)])


def _measure(e: np.ndarray, y: np.ndarray, classes: list[str], mu: np.ndarray, w: np.ndarray,
             b: np.ndarray, rng: np.random.Generator,
             home: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Accuracy on random 100-crop sessions, and the error of a class's estimated share in
    sessions where it is 50 % of 100 crops (a pathological smear), for each way; and that
    share error on the training labs' own crops (`home`), where the model is right."""
    balanced = mu.mean(0, keepdims=True)
    ways = {"as_is": lambda x: x, "plain": lambda x: plain_shift(x, balanced),
            "mix_aware": lambda x: x + estimate(x, mu, w, b).shift}

    def label(emb: np.ndarray) -> np.ndarray:
        return (emb @ w.T + b).argmax(1)

    rows: dict[str, object] = {}
    for name, way in ways.items():
        accs = []
        for _ in range(20):
            idx = rng.permutation(len(y))[:100]
            accs.append(float((label(way(e[idx])) == y[idx]).mean()))
        rows[f"{name}_sessions_of_100"] = round(float(np.mean(accs)), 4)
    skew: dict[str, dict[str, float]] = {}
    for cls in np.unique(y):
        if np.sum(y == cls) < 20:
            continue
        errs: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(10):
            idx = _skewed(y, int(cls), 0.5, 100, rng)
            for name, way in ways.items():
                errs[name].append(float((label(way(e[idx])) == cls).mean()) - 0.5)
        skew[classes[int(cls)]] = {k: round(float(np.mean(v)), 3) for k, v in errs.items()}
    rows["share_error_at_50pct"] = skew
    for name, way in ways.items():
        errs = [abs(float((label(way(he[idx])) == cls).mean()) - 0.5)
                for he, hy in home for cls in np.unique(hy) if np.sum(hy == cls) >= 20
                for idx in (_skewed(hy, int(cls), 0.5, 100, rng) for _ in range(5))]
        rows[f"{name}_home_share_error_at_50pct"] = round(float(np.mean(errs)), 3)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out: dict[str, object] = {}
    for run, (train, held) in LOLO.items():
        model = Classifier(args.runs / run / "classifier.onnx", threads=2)
        assert model.head is not None
        w, b = model.head.arrays()
        labs = [_lab(model, spec) for spec in train]
        mu = np.nanmean([_class_means(e, y, len(model.classes), rng) for e, y in labs], axis=0)
        present = ~np.isnan(mu).any(1)
        mu = np.where(present[:, None], mu, np.nanmean(mu[present], 0))
        e, y = _lab(model, held)

        def distances(emb: np.ndarray, mu: np.ndarray = mu, w: np.ndarray = w,
                      b: np.ndarray = b) -> list[float]:
            return [estimate(emb[rng.permutation(len(emb))[:100]], mu, w, b).distance
                    for _ in range(20)]

        seen = max(max(distances(emb)) for emb, _ in labs if len(emb) >= 100)
        unseen = distances(e)
        out[run] = {"held_out": held, **_measure(e, y, model.classes, mu, w, b, rng, labs),
                    "distance_training_labs_max": round(seen, 3),
                    "distance_held_out_lab": [round(min(unseen), 3), round(max(unseen), 3)],
                    "held_out_sessions_beyond_training":
                        float(np.mean(np.array(unseen) > seen))}
        print(run, json.dumps(out[run]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
