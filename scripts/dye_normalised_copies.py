"""Write per-crop dye-normalised copies of the three white-cell labs: how the first
`--dye-normalise` leave-one-lab-out runs (session 15, seed 0) were made, before the option
existed. Each crop, at its own resolution (JTSC's widened 1.8x first), is redrawn from its
own Macenko dyes into the median stain of the unlabelled stain bank (the unrounded form of
`edge.inference.dyes.CANONICAL`); `train classify --dye-normalise` does the same after the
resize to the model's input. Copies go outside the repository.

  python scripts/dye_normalised_copies.py --out /work/scratch/dyenorm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import read_image
from edge.inference.dyes import Stain, estimate, restain
from training.classify_data import zoom_out

D = Path("../shared/datasets/classification")
LABS = (("wbc-jtsc", 1.8), ("wbc-lisc", 1.0), ("pbc-8class", 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path,
                        default=Path("training/stain-banks/unlabelled-fields.json"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bank = json.loads(args.bank.read_text())["stains"]
    vecs = np.median(np.array([s["vectors"] for s in bank]), axis=0)
    target = Stain(vecs / np.linalg.norm(vecs, axis=0),
                   np.median([s["strength"] for s in bank], axis=0))
    for lab, zoom in LABS:
        kept = 0
        for path in sorted(p for p in (D / lab).rglob("*") if p.is_file()):
            image = read_image(path)
            if zoom != 1.0:
                image = zoom_out(image, zoom)
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) / 255.0
            own = estimate(rgb)
            if own is None:
                kept += 1  # too little stain to estimate: copied as it is
            else:
                rgb = restain(rgb, own, target)
            dest = args.out / lab / path.relative_to(D / lab).with_suffix(".png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dest), cv2.cvtColor((rgb * 255 + 0.5).astype(np.uint8),
                                                cv2.COLOR_RGB2BGR))
        print(f"{lab}: done, {kept} crops without an estimate copied as they are", flush=True)


if __name__ == "__main__":
    main()
