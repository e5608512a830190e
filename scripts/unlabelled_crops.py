"""White-cell crops of unlabelled fields from other clinics, cut as the runner cuts them, for
`hemascope train classify --unlabelled` (issue #18). Only the detection labels are used
(where a white cell is, and the red cells as the ruler), never a white-cell type: a square
of `crop_rbc_diameters` red-cell diameters centred on each white-cell box, at the
classifier's input size. Fields of a size given with --exclude-size are left out (PBC's
Barcelona fields, so no leave-one-lab-out run sees its held-out lab).

    python scripts/unlabelled_crops.py ../shared/datasets/detection/txl-pbc \\
        --exclude-size 360x363 --exclude-size 366x369 --out runs/unlabelled-wbc
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
from rich.progress import track

from edge.capture.folder import read_image
from edge.config import ClassifiersConfig
from edge.inference.classifier import resize_rgb
from edge.pipeline.scale import rbc_diameter
from edge.pipeline.second_stage import WBC_IN_RBC_DIAMETERS, square_crop
from training.evaluate import load_truth

WBC_CLASS, RBC_CLASS = 0, 1  # TXL-PBC's data.yaml: WBC, RBC, Platelets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="a YOLO detection set (images/, labels/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--exclude-size", action="append", default=[], metavar="WxH")
    ap.add_argument("--size", type=int, default=128, help="the classifier's input size")
    args = ap.parse_args()
    excluded = {tuple(int(v) for v in s.split("x")) for s in args.exclude_size}
    diameters = ClassifiersConfig().crop_rbc_diameters
    args.out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    for image_path in track(sorted(args.dataset.glob("images/*/*")), description="fields"):
        label_file = args.dataset / "labels" / image_path.parent.name / f"{image_path.stem}.txt"
        try:
            image = read_image(image_path)
        except ValueError:
            counts["fields unreadable"] += 1
            continue
        if not label_file.is_file():
            counts["fields without a label file"] += 1
            continue
        h, w = image.shape[:2]
        if (w, h) in excluded:
            counts["fields excluded by size"] += 1
            continue
        det = load_truth(label_file, w, h)
        wbc = det.xyxy[det.class_id == WBC_CLASS]
        ruler = rbc_diameter(det, RBC_CLASS, (h, w))
        for k, box in enumerate(wbc):
            rbc = ruler or float(max(box[2] - box[0], box[3] - box[1])) / WBC_IN_RBC_DIAMETERS
            crop = resize_rgb(square_crop(image, box, diameters * rbc), args.size)
            name = f"{image_path.stem}-{k}.png"
            cv2.imwrite(str(args.out / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            counts["crops"] += 1
        counts["fields"] += 1
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
