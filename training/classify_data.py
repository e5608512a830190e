"""Class-folder datasets (DATA/CLASS/*.jpg) from one or more laboratories: content-hash
de-duplication, a stratified reproducible split, lab-and-class balanced sampling and the data
digest that goes into the model manifest."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import read_image
from edge.core.files import file_sha256
from edge.inference.classifier import resize_rgb
from edge.inference.dyes import normalise
from training.datasets import IMAGE_SUFFIXES, DatasetError

SPLITS = ("train", "val", "test")
CLASS_SHARES = ("equal", "sqrt")  # a class's share of its lab's draws (sampling_weights)


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int
    sha256: str
    split: str  # "train", "val" or "test"
    source: str = ""  # the laboratory (dataset folder name)


@dataclass(frozen=True)
class Source:
    """One laboratory's class folders and how they enter training."""

    path: Path
    split: str = "hash"  # "hash": by content hash; "train": all train ("val": all val)
    zoom_out: float = 1.0  # widen its crops this much to reach the device's crop geometry
    test: float = 0.0  # with split=hash: this share of each class held out as "test"

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def parse(cls, spec: str) -> Source:
        """`PATH`, or `PATH:key=value,...` with keys split (hash|train|val), test (a share,
        with split=hash) and zoom_out."""
        path, _, options = spec.partition(":")
        values: dict[str, str] = {}
        for pair in filter(None, options.split(",")):
            key, sep, value = pair.partition("=")
            if not sep or key not in ("split", "test", "zoom_out"):
                raise DatasetError(f"{spec}: unknown option {pair!r} (use split=hash|train|val, "
                                   "test=SHARE or zoom_out=FACTOR)")
            values[key] = value
        split = values.get("split", "hash")
        if split not in ("hash", "train", "val"):
            raise DatasetError(f"{spec}: split must be hash, train or val")
        try:
            zoom = float(values.get("zoom_out", 1.0))
            test = float(values.get("test", 0.0))
        except ValueError:
            raise DatasetError(f"{spec}: zoom_out and test must be numbers") from None
        if not 1.0 <= zoom <= 5.0:
            raise DatasetError(f"{spec}: zoom_out must be between 1 and 5")
        if not 0.0 <= test < 0.5:
            raise DatasetError(f"{spec}: test must be a share from 0 to below 0.5")
        if test and split != "hash":
            raise DatasetError(f"{spec}: test=SHARE holds images out of a split=hash lab only")
        return cls(Path(path), split, zoom, test)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "split": self.split,
                "zoom_out": self.zoom_out, "test": self.test}

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Source:
        """The source `describe` recorded (e.g. in a model's training manifest; records
        written before the test share existed have none)."""
        return cls(Path(str(record["path"])), str(record["split"]),
                   float(str(record["zoom_out"])), float(str(record.get("test", 0.0))))

    def spec(self) -> str:
        """The command-line form `parse` reads: PATH[:split=...,test=...,zoom_out=...]."""
        options = [f"split={self.split}"] * (self.split != "hash") + \
            [f"test={self.test:g}"] * (self.test != 0.0) + \
            [f"zoom_out={self.zoom_out:g}"] * (self.zoom_out != 1.0)
        return f"{self.path}:{','.join(options)}" if options else str(self.path)


@dataclass
class ClassDataset:
    classes: list[str]
    items: list[LabelledImage]
    duplicates_dropped: int  # same bytes again in the same class
    conflicts_dropped: int  # same bytes under two classes: every copy dropped
    val_fraction: float
    sources: list[Source] = field(default_factory=list)
    skipped_classes: list[str] = field(default_factory=list)  # folders outside `classes`

    def split(self, name: str) -> list[LabelledImage]:
        return [it for it in self.items if name == "all" or it.split == name]

    def counts(self, name: str) -> dict[str, int]:
        per = Counter(it.label for it in self.split(name))
        return {c: per.get(i, 0) for i, c in enumerate(self.classes)}

    def digest(self) -> str:
        """sha256 over every kept image's content hash, class and split (and its lab, when
        several labs are combined)."""
        many = len(self.sources) > 1
        lines = sorted(f"{it.sha256} {self.classes[it.label]} {it.split}"
                       + (f" {it.source}" if many else "") for it in self.items)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def summary(self) -> dict:
        per_lab = {s.name: {split: dict(Counter(self.classes[it.label] for it in self.items
                                                if it.source == s.name and it.split == split))
                            for split in SPLITS} for s in self.sources}
        return {"classes": self.classes, "val_fraction": self.val_fraction,
                "sources": [s.describe() for s in self.sources], "per_source": per_lab,
                **{split: self.counts(split) for split in SPLITS},
                "duplicates_dropped": self.duplicates_dropped,
                "conflicts_dropped": self.conflicts_dropped, "data_digest": self.digest()}

    def sampling_weights(self, split: str = "train", class_share: str = "equal") -> np.ndarray:
        """Per-image draw weights (summing to 1) that give every lab the same share and,
        within a lab, every class the same share ("equal") or one in proportion to the square
        root of its image count ("sqrt": a lab's one basophil is not drawn as often as its
        hundreds of neutrophils together)."""
        if class_share not in CLASS_SHARES:
            raise ValueError(f"class_share must be one of {', '.join(CLASS_SHARES)}")
        items = self.split(split)
        per = Counter((it.source, it.label) for it in items)
        labs = {src for src, _ in per}
        mass = {key: 1.0 if class_share == "equal" else float(np.sqrt(n))
                for key, n in per.items()}
        lab_mass = {lab: sum(m for (src, _), m in mass.items() if src == lab) for lab in labs}
        return np.array([mass[key] / (len(labs) * lab_mass[key[0]] * per[key])
                         for key in ((it.source, it.label) for it in items)])


def _class_names(root: Path) -> list[str]:
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder of class folders")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_class_folders(root: Path | Source | list[Source], val_fraction: float = 0.2,
                       classes: list[str] | None = None,
                       skip_unknown: bool = False) -> ClassDataset:
    """Read SOURCE/CLASS/* images of every source, drop repeated bytes, and split.

    A "hash" source is split per class: its images in sha256 order, the first
    n * val_fraction (rounded half up) go to val, the next n * its `test` share (rounded half
    up; none by default) to test, the rest to train; so the split is exactly stratified, the
    same bytes always land in the same split whatever the file names, and val does not
    depend on the test share. `classes` (default:
    every class folder of every source, sorted) fixes the label order; a source may lack
    some classes, but may not have a class outside it unless `skip_unknown` (then such
    folders are left out and listed in `skipped_classes`)."""
    sources = root if isinstance(root, list) else [root if isinstance(root, Source)
                                                   else Source(root)]
    names = {s.name: _class_names(s.path) for s in sources}
    if len(names) != len(sources):
        raise DatasetError("two sources share a folder name: rename one")
    classes = classes or sorted({c for cs in names.values() for c in cs})
    if len(classes) < 2:
        raise DatasetError(f"{sources[0].path}: expected one sub-folder per class "
                           f"(found {len(classes)})")
    first: dict[str, tuple[int, Path, Source]] = {}  # sha256 -> (label, first path, source)
    conflicted: set[str] = set()
    skipped: set[str] = set()
    duplicates = 0
    for src in sources:
        unknown = sorted(set(names[src.name]) - set(classes))
        if unknown and not skip_unknown:
            raise DatasetError(f"{src.path}: classes {', '.join(unknown)} are not among "
                               f"{', '.join(classes)}")
        skipped.update(unknown)
        for name in (n for n in names[src.name] if n in classes):
            label = classes.index(name)
            for path in sorted((src.path / name).iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                sha = file_sha256(path)
                if sha not in first:
                    first[sha] = (label, path, src)
                elif first[sha][0] == label:
                    duplicates += 1
                else:
                    conflicted.add(sha)
    items: list[LabelledImage] = []
    for src in sources:
        for label in range(len(classes)):
            shas = sorted(s for s, (lab, _, where) in first.items()
                          if lab == label and where is src and s not in conflicted)
            n_val = {"hash": int(len(shas) * val_fraction + 0.5), "train": 0,
                     "val": len(shas)}[src.split]
            n_test = min(int(len(shas) * src.test + 0.5), len(shas) - n_val)
            items += [LabelledImage(first[s][1], label, s, "val" if i < n_val else
                                    "test" if i < n_val + n_test else "train", src.name)
                      for i, s in enumerate(shas)]
    return ClassDataset(classes, items, duplicates, len(conflicted), val_fraction, sources,
                        sorted(skipped))


def zoom_out(image: np.ndarray, factor: float) -> np.ndarray:
    """A square crop `factor` times wider than the image, centred on it, its border
    replicated outwards (as the device pads a crop at the edge of a field)."""
    h, w = image.shape[:2]
    side = round(max(h, w) * factor)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left,
                              cv2.BORDER_REPLICATE)


def load_pixels(items: list[LabelledImage], size: int, sources: list[Source] | None = None,
                dye_normalise: bool = False) -> np.ndarray:
    """(N, size, size, 3) RGB uint8, preprocessed exactly as `edge.classifier` does, each
    lab's crops first widened by its `zoom_out` (and, with `dye_normalise`, redrawn in the
    canonical dyes as a classifier trained so does before its graph)."""
    zoom = {s.name: s.zoom_out for s in sources or []}
    out = np.empty((len(items), size, size, 3), np.uint8)
    for i, it in enumerate(items):
        image = read_image(it.path)
        factor = zoom.get(it.source, 1.0)
        out[i] = resize_rgb(zoom_out(image, factor) if factor != 1.0 else image, size)
        if dye_normalise:
            out[i] = normalise(out[i])
    return out


def held_out_lab(spec: str, classes: list[str], size: int, limit: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every crop of a lab scored as a lab a model never saw (PATH[:zoom_out=...], all its
    images whatever its split; folders outside `classes` left out), prepared at `size` as
    `load_pixels` does: (pixels, labels). `limit`: a seeded sample (seed 42) of that many."""
    lab = Source.parse(spec)
    data = read_class_folders([Source(lab.path, "val", lab.zoom_out)], 0.2, classes,
                              skip_unknown=True)
    items = data.split("all")
    if limit and len(items) > limit:
        keep = np.random.default_rng(42).permutation(len(items))[:limit]
        items = [items[i] for i in sorted(keep)]
    return load_pixels(items, size, data.sources), np.array([it.label for it in items])
