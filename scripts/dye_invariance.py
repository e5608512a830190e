"""Measurement: how much a colour change moves a crop before and after dye normalisation
(`edge.inference.dyes.normalise`). A normaliser worth having moves the normalised crop less
than the raw one.

Real crops (every STEP-th image of each folder, prepared as the classifier prepares them:
128 px RGB) are changed by the four hue +-10 degrees x saturation x0.7 / x1.3 corners of
`hemascope eval`, and by a hue shift of +10 degrees alone. Prints and writes the mean absolute
difference, in grey levels, between each crop and its changed copy, raw and normalised:

    python scripts/dye_invariance.py ../shared/datasets/classification/pbc-8class \
        ../shared/datasets/classification/wbc-lisc --json docs/bench/dye-invariance.json

To measure another version of the normaliser, put its checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.inference.classifier import resize_rgb
from edge.inference.dyes import normalise
from training.augment import shift_hue_saturation
from training.classify_eval import HSV_SHIFTS

SIZE = 128


def _moved(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="class-folder datasets")
    parser.add_argument("--per-folder", type=int, default=100, help="crops taken per folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    crops = []
    for folder in args.folders:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        step = max(1, len(paths) // args.per_folder)
        crops += [resize_rgb(read_image(p), SIZE) for p in paths[::step][:args.per_folder]]
    changes = {f"hue{h:+.0f}_sat{s:.1f}": (h, s) for h, s in HSV_SHIFTS}
    changes["hue+10"] = (10.0, 1.0)
    normalised = [normalise(c) for c in crops]
    result: dict[str, object] = {"folders": [str(f) for f in args.folders], "crops": len(crops)}
    for name, (hue, sat) in changes.items():
        changed = [shift_hue_saturation(c, hue, sat) for c in crops]
        result[name] = {
            "raw": round(float(np.mean([_moved(c, v) for c, v in zip(crops, changed,
                                                                      strict=True)])), 2),
            "normalised": round(float(np.mean([_moved(n, normalise(v)) for n, v in
                                               zip(normalised, changed, strict=True)])), 2)}
    corners = [result[name] for name in changes if name != "hue+10"]
    result["corners_mean"] = {key: round(float(np.mean([c[key] for c in corners])), 2)
                              for key in ("raw", "normalised")}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
