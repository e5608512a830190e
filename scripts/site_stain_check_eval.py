"""The stain check of a site-calibrated differential, measured (writes JSON).

A leave-one-lab-out model (its manifest holding the training labs' stain reference: `hemascope
eval MODEL --data LAB... --split train --set-reference`) is calibrated to the lab it never saw,
the "site": N of the site's crops play the reviewed cells, fitted exactly as `hemascope
calibrate wbc` fits them (colour inputs, and the site's class means as the stain check's
reference). Then sessions of S other crops of the site, and of every `--other` lab, are
measured as the runner's stain check measures them. Reported for each draw: the share of
sessions flagged unfamiliar by the calibrated model (site: false alarms; other labs: what it
should flag) and by the base model.

  D=../shared/datasets/classification
  python scripts/site_stain_check_eval.py runs/dyes2-lolo-pbc/classifier.onnx $D/pbc-8class \\
      --other $D/wbc-jtsc:zoom_out=1.8 --other $D/wbc-lisc --limit 1200 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.inference.classifier import Classifier
from edge.inference.stain import estimate
from edge.site.calibrate import fit_views, site_inputs, site_means, start_head, view_embeddings
from training.classify_data import Source, held_out_lab


def flagged(distances: list[float], reference: float) -> float:
    return float(np.mean([d > reference for d in distances]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("site", metavar="SITE_LAB[:OPTIONS]")
    ap.add_argument("--other", action="append", default=[], metavar="LAB[:OPTIONS]")
    ap.add_argument("--reviewed", type=int, default=50)
    ap.add_argument("--session", type=int, default=100, help="white cells per session")
    ap.add_argument("--sessions", type=int, default=20, help="sessions per lab and draw")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    classifier = Classifier(args.model, threads=1)
    head = classifier.head
    if head is None or head.means() is None or head.reference_distance is None:
        raise SystemExit(f"{args.model} has no stain reference: hemascope eval ... "
                         "--set-reference first")
    reference = head.reference_distance
    site_pixels, site_y = held_out_lab(args.site, classifier.classes, classifier.size,
                                       args.limit)
    emb = view_embeddings(classifier, list(site_pixels)).astype(np.float64)
    colours = classifier.colours(list(site_pixels)).astype(np.float64)
    others = {Source.parse(spec).name: classifier.embeddings(list(held_out_lab(
        spec, classifier.classes, classifier.size, args.limit)[0])) for spec in args.other}
    rows = []
    for draw in range(args.draws):
        rng = np.random.default_rng(draw)
        pick = rng.permutation(len(site_y))
        reviewed, rest = pick[:args.reviewed], pick[args.reviewed:]
        x, mean, scale = site_inputs(emb[reviewed], colours[reviewed])
        fitted = fit_views(x, site_y[reviewed], start_head(head, mean, scale))
        means = site_means(head.means(), emb[reviewed, 0], site_y[reviewed])
        d = means.shape[1]
        labs = {"site": emb[rest, 0].astype(np.float32), **others}
        row: dict[str, object] = {"draw": draw}
        for name, pool in labs.items():
            sessions = [pool[rng.choice(len(pool), min(args.session, len(pool)), replace=False)]
                        for _ in range(args.sessions)]
            calibrated = [estimate(s, means, fitted[:, :d], fitted[:, -1]).distance
                          for s in sessions]
            base = [classifier.stain_shift(s).distance for s in sessions]  # type: ignore[union-attr]
            row[name] = {"calibrated_flagged": flagged(calibrated, reference),
                         "calibrated_distance": [round(min(calibrated), 3),
                                                 round(max(calibrated), 3)],
                         "base_flagged": flagged(base, reference),
                         "base_distance": [round(min(base), 3), round(max(base), 3)]}
        rows.append(row)
        print(json.dumps(row))
    out = {"model": args.model.name, "site": args.site, "others": args.other,
           "reference_distance": reference, "reviewed": args.reviewed,
           "session": args.session, "sessions": args.sessions, "draws": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
