"""Coverage of the differential's 95 % intervals: synthetic sessions from known true
differentials, stopped at 100 / 200 / 400 white cells, and the exact coverage of each interval
method at a fixed count over a grid of true proportions.

    python scripts/clinical_coverage.py --json docs/bench/clinical-coverage.json

A session draws white cells per field (Poisson) on fields of which a share is QC-rejected
(their cells never count), stops at the first accepted field that brings the count to the
target (the rule of edge.clinical.stop_rule), then labels the counted cells from the true
differential. The stop depends on the total only, never on the labels, so the labels are a
multinomial draw given the total.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from edge.clinical.intervals import proportion_interval

TRUTHS = {
    "normal adult": {"neutrophil": 0.60, "lymphocyte": 0.30, "monocyte": 0.06,
                     "eosinophil": 0.03, "basophil": 0.01},
    "neutrophilia, left shift": {"neutrophil": 0.80, "lymphocyte": 0.10, "monocyte": 0.05,
                                 "eosinophil": 0.01, "basophil": 0.005, "ig": 0.035},
    "lymphocytosis": {"neutrophil": 0.25, "lymphocyte": 0.65, "monocyte": 0.06,
                      "eosinophil": 0.03, "basophil": 0.01},
    "eosinophilia": {"neutrophil": 0.50, "lymphocyte": 0.25, "monocyte": 0.05,
                     "eosinophil": 0.18, "basophil": 0.02},
}
METHODS = ("auto", "wilson", "clopper-pearson")


def stop_counts(target: int, sessions: int, per_field: float, reject: float,
                rng: np.random.Generator) -> np.ndarray:
    """White cells counted when each session stops (first accepted field reaching target)."""
    fields = int(2 * target / (per_field * (1 - reject))) + 50
    n = np.zeros(sessions, dtype=np.int64)
    todo = np.arange(sessions)
    while todo.size:  # rare sessions that need more fields than drawn get another batch
        cells = rng.poisson(per_field, (todo.size, fields))
        cells[rng.random((todo.size, fields)) < reject] = 0  # rejected: never counted
        total = n[todo, None] + np.cumsum(cells, axis=1)
        reached = total >= target
        done = reached.any(axis=1)
        n[todo[done]] = total[done, reached[done].argmax(axis=1)]
        n[todo[~done]] = total[~done, -1]
        todo = todo[~done]
    return n


def session_coverage(truth: dict[str, float], target: int, sessions: int, per_field: float,
                     reject: float, method: str, rng: np.random.Generator) -> dict[str, float]:
    n = stop_counts(target, sessions, per_field, reject, rng)
    p = np.array(list(truth.values()))
    counts = rng.multinomial(n, p / p.sum())
    cache: dict[tuple[int, int, float], bool] = {}
    out = {}
    for j, (label, share) in enumerate(truth.items()):
        hits = 0
        for k, total in zip(counts[:, j].tolist(), n.tolist(), strict=True):
            key = (k, total, share)
            if key not in cache:
                cache[key] = proportion_interval(k, total, method).contains(share)  # type: ignore[arg-type]
            hits += cache[key]
        out[label] = hits / sessions
    return out


def exact_coverage(n: int, method: str, grid: np.ndarray) -> dict[str, float]:
    """Min and mean over `grid` of the exact coverage P(interval(X, n) contains p)."""
    k = np.arange(n + 1)
    ends = np.array([(iv.low, iv.high) for iv in
                     (proportion_interval(int(j), n, method) for j in k)])  # type: ignore[arg-type]
    log_comb = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                         for j in k])
    cov = np.array([np.exp(log_comb + k * math.log(p) + (n - k) * math.log1p(-p))
                    [(ends[:, 0] <= p) & (p <= ends[:, 1])].sum() for p in grid])
    return {"min": float(cov.min()), "mean": float(cov.mean()),
            "p_at_min": float(grid[cov.argmin()]),
            "below_93": float((cov < 0.93).mean()), "above_97": float((cov > 0.97).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10_000, help="sessions per cell")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--targets", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--wbc-per-field", type=float, default=4.0)
    ap.add_argument("--reject", type=float, default=0.15, help="share of fields QC rejects")
    ap.add_argument("--method", choices=METHODS, default="auto")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    sessions = {}
    for name, truth in TRUTHS.items():
        for target in args.targets:
            cov = session_coverage(truth, target, args.sessions, args.wbc_per_field,
                                   args.reject, args.method, rng)
            sessions[f"{name} @ {target}"] = cov
            print(f"{name:26s} {target:4d}  " + "  ".join(
                f"{label} {100 * c:5.1f}" for label, c in cov.items()))
    grid = np.linspace(0.002, 0.5, 500)
    exact = {method: {str(n): exact_coverage(n, method, grid) for n in args.targets}
             for method in METHODS}
    for method, by_n in exact.items():
        print(f"exact {method:16s} " + "  ".join(
            f"n={n}: min {100 * e['min']:.1f} mean {100 * e['mean']:.1f}"
            for n, e in by_n.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(["python", *sys.argv]), "seed": args.seed,
                       "sessions": args.sessions, "wbc_per_field": args.wbc_per_field,
                       "reject": args.reject, "method": args.method, "truths": TRUTHS,
                       "session_coverage": sessions,
                       "exact_coverage_grid": [float(grid[0]), float(grid[-1]), len(grid)],
                       "exact_coverage": exact,
                       "seconds": round(time.perf_counter() - started, 1)}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
