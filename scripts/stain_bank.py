"""Write a stain bank for `hemascope train classify --stain-bank`: the two dye colours
(Macenko) of unlabelled smear images, a seeded sample of up to --per-folder images from each
folder (searched recursively). Only colours are kept, never labels. Leave out every image of
a laboratory a leave-one-lab-out run is to be judged on (--exclude-size drops images by
their size, e.g. TXL-PBC's Barcelona fields, 360x363).

  python scripts/stain_bank.py ../shared/datasets/detection/txl-pbc/images \
      ../shared/datasets/classification/all-4class --exclude-size 360x363 \
      --exclude-size 366x369 --out training/stain-banks/unlabelled-fields.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.inference.dyes import estimate
from training.stain_mix import BANK_FORMAT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--per-folder", type=int, default=300)
    parser.add_argument("--exclude-size", action="append", default=[], metavar="WxH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    excluded = {tuple(int(v) for v in s.lower().split("x")) for s in args.exclude_size}
    stains, sources = [], []
    for folder in args.folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        random.Random(args.seed).shuffle(files)
        used = skipped = unusable = 0
        for path in files:
            if used == args.per_folder:
                break
            try:
                image = read_image(path)
            except ValueError:
                image = None
            if image is None or (image.shape[1], image.shape[0]) in excluded:
                skipped += 1
                continue
            stain = estimate(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) / 255.0)
            if stain is None:
                unusable += 1
                continue
            stains.append({"image": str(path), "vectors": stain.vectors.round(5).tolist(),
                           "strength": stain.strength.round(5).tolist()})
            used += 1
        sources.append({"folder": str(folder), "images": used, "excluded_or_unreadable": skipped,
                        "without_stain": unusable})
        print(f"{folder}: {used} stains ({skipped} excluded or unreadable, {unusable} "
              "without enough stain)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"format": BANK_FORMAT, "seed": args.seed,
                                    "excluded_sizes": sorted(args.exclude_size),
                                    "sources": sources, "stains": stains}, indent=1))
    print(f"wrote {args.out}: {len(stains)} stains")


if __name__ == "__main__":
    main()
