"""Class-folder datasets (DATA/CLASS/*.jpg): content-hash de-duplication, a stratified
reproducible split and the data digest that goes into the model manifest."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.capture.folder import read_image
from edge.core.files import file_sha256
from edge.inference.classifier import resize_rgb
from training.datasets import IMAGE_SUFFIXES, DatasetError


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int
    sha256: str
    split: str  # "train" or "val"


@dataclass
class ClassDataset:
    classes: list[str]
    items: list[LabelledImage]
    duplicates_dropped: int  # same bytes again in the same class
    conflicts_dropped: int  # same bytes under two classes: every copy dropped
    val_fraction: float

    def split(self, name: str) -> list[LabelledImage]:
        return [it for it in self.items if it.split == name]

    def counts(self, name: str) -> dict[str, int]:
        per = Counter(it.label for it in self.split(name))
        return {c: per.get(i, 0) for i, c in enumerate(self.classes)}

    def digest(self) -> str:
        """sha256 over every kept image's content hash, class and split."""
        lines = sorted(f"{it.sha256} {self.classes[it.label]} {it.split}" for it in self.items)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def summary(self) -> dict:
        return {"classes": self.classes, "val_fraction": self.val_fraction,
                "train": self.counts("train"), "val": self.counts("val"),
                "duplicates_dropped": self.duplicates_dropped,
                "conflicts_dropped": self.conflicts_dropped, "data_digest": self.digest()}


def read_class_folders(root: Path, val_fraction: float = 0.2) -> ClassDataset:
    """Read DATA/CLASS/* images, drop repeated bytes, and split each class by content hash.

    Within each class the images are ordered by sha256 and the first n * val_fraction
    (rounded half up) go to val: the split is exactly stratified, and the same bytes always
    land in the same split, whatever the file names."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"{root}: expected one sub-folder per class (found {len(classes)})")
    first: dict[str, tuple[int, Path]] = {}  # sha256 -> (label, first path)
    conflicted: set[str] = set()
    duplicates = 0
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            sha = file_sha256(path)
            if sha not in first:
                first[sha] = (label, path)
            elif first[sha][0] == label:
                duplicates += 1
            else:
                conflicted.add(sha)
    items: list[LabelledImage] = []
    for label in range(len(classes)):
        shas = sorted(s for s, (lab, _) in first.items() if lab == label and s not in conflicted)
        n_val = int(len(shas) * val_fraction + 0.5)
        items += [LabelledImage(first[s][1], label, s, "val" if i < n_val else "train")
                  for i, s in enumerate(shas)]
    return ClassDataset(classes, items, duplicates, len(conflicted), val_fraction)


def class_weights(counts: list[int]) -> np.ndarray:
    """Inverse-frequency weights n / (K * n_c), so each class carries the same total weight."""
    arr = np.asarray(counts, dtype=np.float64)
    return arr.sum() / (len(arr) * np.maximum(arr, 1))


def load_pixels(items: list[LabelledImage], size: int) -> np.ndarray:
    """(N, size, size, 3) RGB uint8, preprocessed exactly as `edge.inference.classifier` does."""
    out = np.empty((len(items), size, size, 3), np.uint8)
    for i, it in enumerate(items):
        out[i] = resize_rgb(read_image(it.path), size)
    return out
