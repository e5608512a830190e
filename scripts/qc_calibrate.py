"""Calibrate field quality control (edge/qc.py) on real images and report its confusion.

Originals: every image of TXL-PBC train (the calibration part) and of TXL-PBC val, BCCD and
CBC (the held-out part), de-duplicated by file sha256 in that order, so an image shared by
two sets is counted once, in the first. Each original is degraded in memory (DEGRADATIONS).
Thresholds are chosen on the calibration part only; the accept/reject confusion is reported
on both parts, for the calibrated thresholds and for the shipped QCConfig defaults.

    python scripts/qc_calibrate.py --json /tmp/qc-calibration.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.core.labels import RBC
from edge.inference.detector import Detector
from edge.pipeline.qc import (
    CELL_RULES,
    IMAGE_RULES,
    QCConfig,
    assess_image,
    cell_scores,
    fingerprint,
    hamming,
    image_scores,
    judge,
)

ROOT = Path(__file__).resolve().parents[1]
PARTS = {
    "calibration": ["detection/txl-pbc/images/train"],
    "held_out": ["detection/txl-pbc/images/val", "detection/bccd/JPEGImages",
                 "detection/cbc/Images"],
}
Degrade = Callable[[np.ndarray], np.ndarray]


def blur(frac: float) -> Degrade:
    return lambda im: cv2.GaussianBlur(im, (0, 0), frac * min(im.shape[:2]))


def motion(frac: float) -> Degrade:
    def apply(im: np.ndarray) -> np.ndarray:
        n = round(frac * min(im.shape[:2])) | 1
        return cv2.filter2D(im, -1, np.full((1, n), 1 / n, np.float32))
    return apply


def gain(factor: float) -> Degrade:
    return lambda im: cv2.convertScaleAbs(im, alpha=factor)


def double_layer(im: np.ndarray) -> np.ndarray:
    """Two layers of cells: transmittances multiply (Beer-Lambert)."""
    return cv2.multiply(im, np.ascontiguousarray(im[::-1, ::-1]), scale=1 / 255)


# name: (function, exact definition, acceptance target: share of fields rejected or None)
DEGRADATIONS: dict[str, tuple[Degrade, str, float | None]] = {
    "blur_0.5%": (blur(0.005), "Gaussian blur, sigma = 0.5 % of the short side", None),
    "blur_1%": (blur(0.01), "Gaussian blur, sigma = 1 % of the short side", 0.95),
    "blur_2%": (blur(0.02), "Gaussian blur, sigma = 2 % of the short side", 0.95),
    "motion_3%": (motion(0.03), "horizontal motion blur: box kernel 1 px high, 3 % of the short "
                  "side long (rounded to an odd number of px)", None),
    "over_x1.8": (gain(1.8), "over-exposure: pixel values x1.8, rounded, clipped at 255", 0.95),
    "over_x2.5": (gain(2.5), "over-exposure: pixel values x2.5, rounded, clipped at 255", 0.95),
    "under_x0.35": (gain(0.35), "under-exposure: pixel values x0.35, rounded", None),
    "under_x0.2": (gain(0.2), "under-exposure: pixel values x0.2, rounded", None),
    "double_layer": (double_layer, "thick area, simulated: the field times itself rotated by "
                     "180 degrees, / 255 (two layers of cells)", None),
}
# which degradation each separable threshold is calibrated against (the others are margins)
SEPARATED = {"min_focus": ("focus", "blur_1%"), "max_highlights": ("highlights", "over_x1.8"),
             "min_brightness": ("brightness", "under_x0.35")}
# thresholds with no degradation to separate from: a margin around the calibration originals
MARGINS: tuple[tuple[str, str, Callable[[np.ndarray], float]], ...] = (
    ("max_shadows", "shadows", lambda v: min(1.0, max(0.05, 2 * v.max()))),
    ("min_contrast", "contrast", lambda v: v.min() / 2),
    ("min_saturation", "saturation", lambda v: v.min() / 2),
    ("max_saturation", "saturation", lambda v: min(255.0, 2 * v.max())),
)
QUANTILES = (0, 0.5, 1, 5, 50, 95, 99, 99.5, 100)
JITTER_PX, NOISE_SIGMA, GAIN_SPREAD, FIELD_SHARE = 4, 3.0, 0.05, 0.75
DUPLICATES = (
    f"field = crop of {FIELD_SHARE:.0%} of the width and height at ({JITTER_PX}, {JITTER_PX}) "
    f"px; re-capture = the same crop moved by a uniform random (dx, dy) in "
    f"[-{JITTER_PX}, {JITTER_PX}] px, pixel values x a uniform gain in [{1 - GAIN_SPREAD}, "
    f"{1 + GAIN_SPREAD}] plus Gaussian noise sigma {NOISE_SIGMA} grey levels; shifted = the crop "
    "moved by 1/4 of its width to the right, and by 1/4 of its height down (two pairs)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def originals(datasets: Path) -> dict[str, list[Path]]:
    """Image paths per part, de-duplicated by sha256 (the first folder holding an image wins)."""
    seen: set[str] = set()
    parts: dict[str, list[Path]] = {}
    for part, folders in PARTS.items():
        parts[part] = []
        for folder in folders:
            for path in sorted((datasets / folder).iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    parts[part].append(path)
    return parts


def duplicate_distances(image: np.ndarray, rng: np.random.Generator) -> dict[str, list[int]]:
    """Fingerprint distances of a re-captured field and of the field shifted by 1/4."""
    h, w = image.shape[:2]
    fh, fw, m = int(h * FIELD_SHARE), int(w * FIELD_SHARE), JITTER_PX
    field = image[m:m + fh, m:m + fw]
    dx, dy = rng.integers(-m, m + 1, 2)
    moved = image[m + dy:m + dy + fh, m + dx:m + dx + fw].astype(np.float32)
    noisy = moved * rng.uniform(1 - GAIN_SPREAD, 1 + GAIN_SPREAD) + rng.normal(
        0, NOISE_SIGMA, moved.shape)
    recapture = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    shifted = [image[m:m + fh, m + fw // 4:m + fw // 4 + fw],
               image[m + fh // 4:m + fh // 4 + fh, m:m + fw]]
    fp = fingerprint(field)
    return {"recapture": [hamming(fp, fingerprint(recapture))],
            "shifted": [hamming(fp, fingerprint(s)) for s in shifted]}


def measure(path: Path, detector: Detector, rng: np.random.Generator) -> dict:
    """Every score of one original: pixel scores per degradation, cells, fingerprints."""
    image = read_image(path)
    variants = {"original": image} | {name: d[0](image) for name, d in DEGRADATIONS.items()}

    def cells(name: str) -> dict[str, float]:
        return cell_scores(detector(variants[name]).detections, image.shape[:2],
                           detector.classes.index(RBC))

    return {"path": str(path), "image": {k: image_scores(v) for k, v in variants.items()},
            "cells": cells("original"), "cells_double_layer": cells("double_layer"),
            "fingerprint": fingerprint(image), **duplicate_distances(image, rng)}


def measure_all(paths: list[Path], detector: Detector, part: str) -> Iterator[dict]:
    rng = np.random.default_rng(0)
    for i, path in enumerate(paths):
        if i % 100 == 0:
            log(f"{part}: {i}/{len(paths)}")
        yield measure(path, detector, rng)


def quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{q:g}": round(float(np.percentile(values, q)), 4) for q in QUANTILES}


def two_digits(value: float, direction: int = 0) -> float:
    """`value` to 2 significant digits: the nearest (0), the next above (1) or below (-1)."""
    if value == 0 or direction == 0:
        return float(f"{value:.2g}")
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 1)
    units = math.floor(value / step) + 1 if direction > 0 else math.ceil(value / step) - 1
    return float(f"{units * step:.2g}")


def calibrate(records: list[dict]) -> tuple[dict[str, float], dict]:
    """Thresholds from the calibration part, and the score quantiles they come from.

    Separable checks: the threshold is the 99th (or 1st) percentile of the calibrating
    degradation, moved to the next 2-significant-digit value towards the originals, so it
    rejects at least 99 % of that degradation and as few originals as possible. Other checks
    have no degradation to separate from: a margin around the originals (docs/qc.md).
    """
    def scores(variant: str, score: str) -> np.ndarray:
        return np.array([r["image"][variant][score] for r in records])

    out: dict[str, float] = {}
    evidence: dict[str, dict] = {}
    for limit, (score, deg) in SEPARATED.items():
        good, bad = scores("original", score), scores(deg, score)
        low = limit.startswith("min_")
        out[limit] = two_digits(np.percentile(bad, 99 if low else 1), 1 if low else -1)
        evidence[limit] = {"original": quantiles(good), deg: quantiles(bad)}
    for limit, score, margin in MARGINS:
        good = scores("original", score)
        out[limit] = two_digits(margin(good))
        evidence[limit] = {"original": quantiles(good)}
    cells = {k: np.array([r["cells"][k] for r in records])
             for k in ("cells", "density", "overlap")}
    out["min_cells"] = int(max(1, np.percentile(cells["cells"], 0.5) // 2))
    out["max_cell_density"] = two_digits(2 * cells["density"].max())
    out["max_overlap"] = two_digits((cells["overlap"].max() + 1) / 2)
    evidence.update({k: {"original": quantiles(v)} for k, v in cells.items()})
    recapture = max(d for r in records for d in r["recapture"])
    shifted = min(d for r in records for d in r["shifted"])
    out["duplicate_distance"] = int(np.sqrt(recapture * shifted))
    evidence["duplicate_distance"] = {"recapture_max": recapture, "shifted_min": shifted}
    return out, evidence


def rejected_by(scores: dict[str, float], cfg: QCConfig, rules: tuple) -> list[str]:
    """The limits of `rules` that these scores break."""
    return [rule[1] for rule in rules if not judge(scores, cfg, (rule,)).accepted]


def rejections(records: list[dict], variant: str, cfg: QCConfig) -> dict:
    """Fields of one variant, the share the pixel checks reject, and which check fired."""
    fired = [rejected_by(r["image"][variant], cfg, IMAGE_RULES) for r in records]
    by_check = {limit: sum(limit in f for f in fired) for _, limit, _ in IMAGE_RULES}
    rejected = sum(map(bool, fired))
    return {"fields": len(records), "rejected": rejected,
            "rejected_share": round(rejected / len(records), 4),
            "by_check": {k: v for k, v in by_check.items() if v}}


def confusion(records: list[dict], cfg: QCConfig) -> dict:
    """Pixel-check rejections per variant, and the originals rejected with their reasons."""
    table = {variant: rejections(records, variant, cfg) for variant in ["original", *DEGRADATIONS]}
    verdicts = [(r["path"], judge(r["image"]["original"], cfg, IMAGE_RULES)) for r in records]
    table["original"]["rejected_fields"] = [
        {"path": path, "reasons": list(v.reasons)} for path, v in verdicts if not v.accepted]
    return table


def cell_report(records: list[dict], cfg: QCConfig) -> dict:
    """Originals the cell checks reject, and the share of originals every check accepts."""
    verdicts = [(r, judge(r["cells"], cfg, CELL_RULES)) for r in records]
    both = sum(v.accepted and judge(r["image"]["original"], cfg, IMAGE_RULES).accepted
               for r, v in verdicts)
    cells = [r["cells"]["cells"] for r in records]
    overlap = [r["cells"]["overlap"] for r in records]
    double = sum(not judge(r["cells_double_layer"], cfg, CELL_RULES).accepted for r in records)
    return {"rejected_by_cell_checks": [{"path": r["path"], "reasons": list(v.reasons)}
                                        for r, v in verdicts if not v.accepted],
            "accepted_by_all_checks_share": round(both / len(records), 4),
            "double_layer_rejected_by_cell_checks_share": round(double / len(records), 4),
            "cells_min_median_max": [min(cells), statistics.median(cells), max(cells)],
            "overlap_median_max": [round(statistics.median(overlap), 3), round(max(overlap), 3)]}


def duplicate_report(records: list[dict], cfg: QCConfig) -> dict:
    """Re-captures caught, shifted fields wrongly caught, distinct originals wrongly caught."""
    limit = cfg.duplicate_distance
    recapture = np.array([d for r in records for d in r["recapture"]])
    shifted = np.array([d for r in records for d in r["shifted"]])
    prints = np.array([r["fingerprint"] for r in records])
    caught = []
    for i in range(len(prints) - 1):
        distances = np.count_nonzero(prints[i + 1:] != prints[i], axis=1)
        caught += [[records[i]["path"], records[i + 1 + j]["path"], int(distances[j])]
                   for j in np.flatnonzero(distances <= limit)]
    return {"recapture_caught_share": round(float(np.mean(recapture <= limit)), 4),
            "recapture_distance_max": int(recapture.max()),
            "shifted_caught_share": round(float(np.mean(shifted <= limit)), 4),
            "shifted_distance_min": int(shifted.min()),
            "distinct_pairs": len(prints) * (len(prints) - 1) // 2,
            "distinct_pairs_caught": caught}


def time_assess(paths: list[Path], cfg: QCConfig, rounds: int = 20) -> float:
    """Median time (ms) of assess_image on the first 50 held-out 640x480 fields."""
    images = [im for im in map(read_image, paths) if im.shape[:2] == (480, 640)][:50]
    times = []
    for image in images:
        for _ in range(rounds):
            t0 = time.perf_counter()
            assess_image(image, cfg)
            times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3) if times else float("nan")


def report(parts: dict[str, list[dict]], configs: dict[str, QCConfig]) -> dict:
    out = {}
    for cfg_name, cfg in configs.items():
        out[cfg_name] = {"thresholds": cfg.model_dump()}
        for part, records in parts.items():
            out[cfg_name][part] = {"pixel_checks": confusion(records, cfg),
                                   "cell_checks": cell_report(records, cfg),
                                   "duplicates": duplicate_report(records, cfg)}
    return out


def print_summary(result: dict) -> None:
    """The held-out figures of the shipped defaults, on stdout (the table is markdown)."""
    held = result["confusion"]["defaults"]["held_out"]
    print("| field set | fields | rejected | accepted |\n| --- | ---: | ---: | ---: |")
    for variant, row in held["pixel_checks"].items():
        print(f"| {variant} | {row['fields']} | {row['rejected_share']:.1%} | "
              f"{1 - row['rejected_share']:.1%} |")
    cells, dup = held["cell_checks"], held["duplicates"]
    print(f"\noriginals rejected by the cell checks: {len(cells['rejected_by_cell_checks'])}; "
          f"accepted by every check: {cells['accepted_by_all_checks_share']:.1%}")
    print(f"re-captures caught: {dup['recapture_caught_share']:.1%}; fields moved by 1/4 "
          f"caught: {dup['shifted_caught_share']:.1%}; pairs of originals caught: "
          f"{len(dup['distinct_pairs_caught'])} of {dup['distinct_pairs']}")
    print(f"defaults equal calibrated thresholds: {result['defaults_equal_calibrated']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", type=Path, default=ROOT / "edge" / "models" / "detector.onnx",
                    help="detector whose output the cell checks judge")
    ap.add_argument("--limit", type=int, default=0, help="use only N images per part (smoke)")
    ap.add_argument("--json", type=Path, help="write the full report here")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    detector = Detector(args.model, threads=1)
    paths = {part: p[:args.limit] if args.limit else p
             for part, p in originals(args.datasets).items()}
    t0 = time.perf_counter()
    parts = {part: list(measure_all(p, detector, part)) for part, p in paths.items()}
    calibrated, evidence = calibrate(parts["calibration"])
    configs = {"calibrated": QCConfig(**calibrated), "defaults": QCConfig()}
    result = {
        "command": " ".join(["python", *sys.argv]),
        "datasets": str(args.datasets),
        "model_sha256": detector.sha256,
        "parts": {part: {"folders": PARTS[part], "images": len(p)} for part, p in paths.items()},
        "degradations": {name: {"definition": d[1], "target_rejected_share": d[2]}
                         for name, d in DEGRADATIONS.items()},
        "duplicate_pairs": DUPLICATES,
        "calibrated_thresholds": calibrated,
        "calibration_evidence": evidence,
        "defaults_equal_calibrated": configs["calibrated"] == configs["defaults"],
        "confusion": report(parts, configs),
        "assess_image_ms_640x480_one_thread": time_assess(paths["held_out"], QCConfig()),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    log(f"calibrated thresholds: {calibrated}")
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
