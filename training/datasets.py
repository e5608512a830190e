"""Import detection datasets (YOLO or Pascal VOC), merge them by image content, write YOLO.

Several public blood-smear sets share images under different names and with labels of
different completeness. Sources are merged in priority order: when the same image (same
bytes) appears in several sources, the labels of the first source listed win. Each source's
own train/val split is kept; a source without one is split reproducibly by content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from edge.core.files import file_sha256
from edge.core.labels import DETECTOR_CLASSES, canonical_class

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """A dataset folder that cannot be read as YOLO or Pascal VOC."""


@dataclass(frozen=True)
class Box:
    """One labelled object: canonical class id and normalised centre/size."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float

    @classmethod
    def from_xyxy(cls, class_id: int, x1: float, y1: float, x2: float, y2: float,
                  width: float, height: float) -> Box:
        """A box given in pixels of a width x height image."""
        return cls(class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                   (x2 - x1) / width, (y2 - y1) / height)

    def xyxy(self, width: float, height: float) -> tuple[float, float, float, float]:
        """The box in pixels of a width x height image."""
        return ((self.cx - self.w / 2) * width, (self.cy - self.h / 2) * height,
                (self.cx + self.w / 2) * width, (self.cy + self.h / 2) * height)

    def yolo_line(self) -> str:
        return f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


@dataclass
class Sample:
    """One image with its boxes, where it came from and which split it belongs to."""

    image: Path
    boxes: list[Box]
    source: str
    split: str | None  # "train", "val" or None when the source has no split
    sha256: str = field(default="")


def detect_format(root: Path) -> str:
    """Return "yolo" or "voc" for a dataset folder, or raise DatasetError."""
    if (root / "data.yaml").is_file():
        return "yolo"
    if (root / "Annotations").is_dir():
        return "voc"
    raise DatasetError(
        f"{root}: not a dataset folder (expected data.yaml for YOLO or Annotations/ for VOC)"
    )


def read_yolo(root: Path) -> Iterator[Sample]:
    """Samples of a YOLO dataset described by root/data.yaml (train and val keys)."""
    meta = yaml.safe_load((root / "data.yaml").read_text())
    names = meta["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    for split in ("train", "val"):
        if split not in meta:
            continue
        image_dir = root / meta[split]
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            label = Path(str(image.parent).replace("images", "labels")) / f"{image.stem}.txt"
            boxes = []
            if label.is_file():
                for line in label.read_text().split("\n"):
                    parts = line.split()
                    if len(parts) != 5:
                        continue
                    cid = canonical_class(names[int(parts[0])])
                    cx, cy, w, h = (float(v) for v in parts[1:])
                    boxes.append(Box(cid, cx, cy, w, h))
            yield Sample(image, boxes, root.name, split)


def read_voc(root: Path) -> Iterator[Sample]:
    """Samples of a Pascal VOC dataset (Annotations/*.xml next to JPEGImages/ or Images/)."""
    image_dirs = [d for d in (root / "JPEGImages", root / "Images") if d.is_dir()]
    if not image_dirs:
        raise DatasetError(f"{root}: VOC dataset without JPEGImages/ or Images/")
    for xml_path in sorted((root / "Annotations").glob("*.xml")):
        tree = ET.parse(xml_path).getroot()
        filename = tree.findtext("filename") or f"{xml_path.stem}.jpg"
        image = next((d / filename for d in image_dirs if (d / filename).is_file()), None)
        if image is None:
            continue
        width = float(tree.findtext("size/width"))
        height = float(tree.findtext("size/height"))
        boxes = []
        for obj in tree.iter("object"):
            cid = canonical_class(obj.findtext("name", "").strip())
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            x1, x2 = max(0.0, min(x1, x2)), min(width, max(x1, x2))
            y1, y2 = max(0.0, min(y1, y2)), min(height, max(y1, y2))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append(Box.from_xyxy(cid, x1, y1, x2, y2, width, height))
        yield Sample(image, boxes, root.name, None)


def read_dataset(root: Path) -> list[Sample]:
    reader = read_yolo if detect_format(root) == "yolo" else read_voc
    samples = list(reader(root))
    for sample in samples:
        sample.sha256 = file_sha256(sample.image)
    return samples


def hash_split(sha256: str, val_fraction: float) -> str:
    """Reproducible split from the content hash: the same image always lands in the same split."""
    return "val" if int(sha256[:8], 16) / 0xFFFFFFFF < val_fraction else "train"


@dataclass
class MergeReport:
    kept: dict[str, int]
    duplicates_dropped: dict[str, int]
    splits: dict[str, int]
    data_digest: str
    label_fixes: dict[str, str | int] | None = None  # path, sha256 and count of fixes applied


class LabelFixes(Protocol):
    """Reviewed label corrections (`training.label_fixes.LoadedFixes`), applied at merge."""

    path: Path
    sha256: str

    def apply(self, samples: dict[str, Sample]) -> int:
        """Correct merged samples (keyed by content sha256) in place; returns how many."""
        ...


def merge(sources: list[Path], out: Path, val_fraction: float = 0.2,
          fixes: LabelFixes | None = None) -> MergeReport:
    """Merge detection datasets into one YOLO dataset at `out` (images are symlinked).

    The first source that holds an image (by content) provides its labels; later copies
    are dropped. Then `fixes` correct training labels (`training/label_fixes.py`). Returns
    what was kept and the digest of the merged data (labels as written, fixes included).
    """
    seen: dict[str, Sample] = {}
    kept: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for root in sources:
        for sample in read_dataset(root):
            if sample.sha256 in seen:
                dropped[sample.source] = dropped.get(sample.source, 0) + 1
                continue
            seen[sample.sha256] = sample
            kept[sample.source] = kept.get(sample.source, 0) + 1
    for sha, sample in seen.items():
        sample.split = sample.split or hash_split(sha, val_fraction)
    applied = None if fixes is None else {"path": str(fixes.path), "sha256": fixes.sha256,
                                          "applied": fixes.apply(seen)}
    digest = hashlib.sha256()
    splits = {"train": 0, "val": 0}
    for split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for sha, sample in sorted(seen.items()):
        split = sample.split
        splits[split] += 1
        name = f"{sha[:16]}{sample.image.suffix.lower()}"
        link = out / "images" / split / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(sample.image.resolve(), link)
        label_text = "\n".join(b.yolo_line() for b in sample.boxes)
        label_file = out / "labels" / split / f"{sha[:16]}.txt"
        label_file.write_text(label_text + "\n" if label_text else "")
        digest.update(f"{sha} {split}\n{label_text}\n".encode())
    report = MergeReport(kept, dropped, splits, digest.hexdigest(), applied)
    (out / "data.yaml").write_text(
        yaml.safe_dump({"path": str(out.resolve()), "train": "images/train", "val": "images/val",
                        "names": dict(enumerate(DETECTOR_CLASSES))}, sort_keys=False)
    )
    (out / "merge.json").write_text(json.dumps(
        {"sources": [str(s) for s in sources], "val_fraction": val_fraction, **report.__dict__},
        indent=2))
    return report
