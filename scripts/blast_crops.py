"""White-cell crops of the ALL fields, as the runner cuts them, for the differential's blast
class (issue #21): detector at its training scale -> white-cell box -> crop sized by the
red-cell ruler -> the classifier's input size. Fields are split by content hash exactly as
`hemascope train classify` splits `all-4class` (20 % of each class to val), so cells of a
val field never train.

Labels, and how their noise is handled (docs/models/classifiers.md, "Blast class"):
- a white cell of an Early / Pre / Pro field is a `blast` unless the bundled differential
  is sure (>= --sure) it is a granulocyte (neutrophil, eosinophil, basophil) or a platelet:
  leukaemic smears keep a few mature cells;
- a white cell of a Benign field is a `lymphocyte` (these smears' lymphoid cells include
  hematogones, benign precursors that look like blasts: never blasts), unless the bundled
  differential is sure it is a granulocyte or an erythroblast; it is left out when the
  differential is unsure;
- a crop with almost nothing stained at its centre (`stained_share` below --min-stain) is left
  out: by eye, mostly the scale bar or an empty border the detector took for a white cell.

    python scripts/blast_crops.py ../shared/datasets/classification/all-4class \
        --out runs/all-cells --json docs/bench/blast-crops.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from edge.capture.folder import read_image
from edge.config import ClassifiersConfig, Profile
from edge.inference.detector import Detector
from edge.pipeline.scale import detect_at_training_scale
from edge.pipeline.second_stage import FieldClassifiers
from training.classify_data import read_class_folders

LEUKAEMIC = ("Early", "Pre", "Pro")
NOT_BLAST = ("neutrophil", "eosinophil", "basophil", "platelet")
NOT_LYMPHOID = ("neutrophil", "eosinophil", "basophil", "erythroblast")


def label_of(field_class: str, label: str, score: float, sure: float) -> str | None:
    """The training label of one crop (None: left out), as the module docstring says."""
    if field_class in LEUKAEMIC:
        return None if label in NOT_BLAST and score >= sure else "blast"
    if score < sure:
        return None
    return label if label in NOT_LYMPHOID else "lymphocyte"


def stained_share(crop_bgr: np.ndarray) -> float:
    """Share of the crop's central 40 % that is stained purple: green below the mean of red
    and blue by more than 0.12 of the crop's white point (a nucleus or blast cytoplasm; the
    background and grey red cells are near neutral)."""
    b, g, r = (crop_bgr[..., i].astype(np.float32) for i in range(3))
    h, w = g.shape
    centre = (slice(h * 3 // 10, h * 7 // 10), slice(w * 3 // 10, w * 7 // 10))
    white = np.percentile(g, 95) + 1e-3
    return float(np.mean(((r[centre] + b[centre]) / 2 - g[centre]) / white > 0.12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the all-4class folder")
    ap.add_argument("--out", type=Path, required=True,
                    help="writes OUT/train/<class>/ and OUT/val/<class>/ crops")
    ap.add_argument("--sure", type=float, default=0.8,
                    help="score at which the bundled differential's label is trusted")
    ap.add_argument("--min-stain", type=float, default=0.05,
                    help="leave out crops with a smaller stained share at their centre")
    ap.add_argument("--fields", type=int, default=0,
                    help="at most this many fields per class and split, in content-hash order "
                    "(0: all; the detector reads a 224 px field in many windows at its scale)")
    ap.add_argument("--json", type=Path, help="counts per split, field class and label")
    args = ap.parse_args()
    detector = Detector(Profile().model.detector)
    classifiers = FieldClassifiers(ClassifiersConfig(wbc=True), detector.classes)
    dataset = read_class_folders(args.data)
    counts: Counter[tuple[str, str, str]] = Counter()
    for split in ("train", "val"):
        items = sorted(dataset.split(split), key=lambda it: (it.label, it.sha256))
        if args.fields:
            items = [it for c in range(len(dataset.classes))
                     for it in [i for i in items if i.label == c][:args.fields]]
        for item in track(items, description=f"{split} fields"):
            field_class = dataset.classes[item.label]
            image = read_image(item.path)
            classifiers.new_session()  # each field is its own slide: no borrowed ruler
            det = detect_at_training_scale(detector, image)
            for cell in classifiers(image, det).cells:
                crop = cv2.cvtColor(cell.model_input, cv2.COLOR_RGB2BGR)
                label = label_of(field_class, cell.label, cell.score, args.sure) \
                    if stained_share(crop) >= args.min_stain else None
                counts[(split, field_class, label or "left out")] += 1
                if label is None:
                    continue
                folder = args.out / split / label
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{field_class}-{item.path.stem}-cell{cell.cell:03d}.png"
                cv2.imwrite(str(folder / name), crop)
    table = [{"split": s, "field_class": f, "label": lab, "crops": n}
             for (s, f, lab), n in sorted(counts.items())]
    for row in table:
        print(row)
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "sure": args.sure,
                                         "min_stain": args.min_stain,
                                         "fields_per_class_and_split": args.fields or "all",
                                         "crops": table}, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
