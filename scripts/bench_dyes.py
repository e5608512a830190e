"""Benchmark: what per-crop dye normalisation (`edge.inference.dyes.normalise`) and a site
calibration's colour histograms (`edge.inference.colour`) add to the WBC differential's time
per crop, on one thread.

The same real crops, prepared as the runner prepares them (128 px, RGB), are timed in
alternating rounds: the classifier's graph alone, the normalisation alone, both (as a
`"stain": "dyes/2"` model runs), and both with the colour histograms (as a site-calibrated
model runs). Each figure is the median over rounds of the per-crop median;
the ratio is the median of the per-round ratios, so the machine's drift falls on both sides.
Run it on an idle machine (no training in the background):

    python scripts/bench_dyes.py --model edge/models/wbc-differential.onnx \
        --crops ../shared/datasets/classification/pbc-8class --json docs/bench/dyes-latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.inference.classifier import Classifier, resize_rgb, to_batch
from edge.inference.colour import colour_features
from edge.inference.dyes import normalise


def _timed(fn, items: list[np.ndarray]) -> float:
    """Median milliseconds per item."""
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("edge/models/wbc-differential.onnx"))
    parser.add_argument("--crops", type=Path, required=True, help="a folder of crops (searched "
                        "recursively)")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = Classifier(args.model, threads=1)
    paths = sorted(p for p in args.crops.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    step = max(1, len(paths) // args.count)
    crops = [resize_rgb(read_image(p), model.size) for p in paths[::step][:args.count]]

    def graph(crop: np.ndarray) -> None:
        model.backend.infer(to_batch([crop]))

    def both(crop: np.ndarray) -> None:
        graph(normalise(crop))

    def calibrated(crop: np.ndarray) -> None:
        stained = normalise(crop)
        graph(stained)
        colour_features(crop, stained)

    rounds = []
    for _ in range(args.rounds):
        row = {"graph_ms": _timed(graph, crops), "normalise_ms": _timed(normalise, crops),
               "both_ms": _timed(both, crops), "calibrated_ms": _timed(calibrated, crops)}
        row["ratio_both_to_graph"] = row["both_ms"] / row["graph_ms"]
        row["ratio_calibrated_to_both"] = row["calibrated_ms"] / row["both_ms"]
        rounds.append(row)
    result = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    result.update(model=str(args.model), crops=len(crops), rounds=args.rounds, threads=1,
                  machine=platform.machine(), cpus=os.cpu_count(),
                  load_average=[round(v, 2) for v in os.getloadavg()])
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
