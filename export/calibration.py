"""Calibration frames for quantized exports: real images, prepared exactly as `edge` does."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.core.files import file_sha256
from edge.inference.classifier import resize_rgb, to_batch
from edge.inference.dyes import METHOD as DYES
from edge.inference.dyes import normalise
from edge.inference.yolo import letterbox_tensor

RECOMMENDED_IMAGES = 300


def content_digest(paths: Iterable[Path]) -> str:
    """sha256 over the sorted content hashes of files (their names and order do not matter)."""
    hashes = sorted(file_sha256(p) for p in paths)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


@dataclass(frozen=True)
class Calibration:
    """The images a quantized model was calibrated on, and a digest of their content."""

    folder: Path
    paths: tuple[Path, ...]
    size: tuple[int, int]  # model input (height, width)
    resize: str = "letterbox"  # as the model's manifest says: "letterbox" or "area"
    stain: str = "as-is"  # as the model's manifest says: "as-is" or edge.inference.dyes.METHOD

    @property
    def digest(self) -> str:
        return content_digest(self.paths)

    def tensors(self) -> Iterator[np.ndarray]:
        """NCHW float32 tensors in [0, 1], prepared as the device does: letterboxed (pad
        114) for a detector, area-resized (and in the canonical dyes, when the model says
        so) for a classifier."""
        for path in self.paths:
            image = read_image(path)
            if self.resize == "area":
                rgb = resize_rgb(image, self.size[0])
                yield to_batch([normalise(rgb) if self.stain == DYES else rgb])
            else:
                yield letterbox_tensor(image, self.size)[0]

    def record(self) -> dict[str, object]:
        """What the manifest keeps about the calibration data."""
        return {"folder": str(self.folder), "images": len(self.paths), "digest": self.digest}


def calibration_images(folder: Path, size: tuple[int, int],
                       max_images: int = RECOMMENDED_IMAGES, resize: str = "letterbox",
                       train_paths: list[Path] | None = None,
                       stain: str = "as-is") -> Calibration:
    """Up to `max_images` images of `folder`, evenly spaced in name order (deterministic).

    A YOLO dataset root is accepted and its `images/train` split is used, so a model is never
    calibrated on the validation images that gate it; for a classifier the caller passes the
    training split of its class folders as `train_paths`. Fewer than 300 images work, with a
    warning.
    """
    if (folder / "images" / "train").is_dir():
        folder = folder / "images" / "train"
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    paths = sorted(train_paths if train_paths is not None else
                   (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    if not paths:
        raise FileNotFoundError(f"no images in calibration folder {folder}")
    if len(paths) > max_images:
        step = len(paths) / max_images
        paths = [paths[int(i * step)] for i in range(max_images)]
    if len(paths) < RECOMMENDED_IMAGES:
        warnings.warn(f"calibrating on {len(paths)} images (>= {RECOMMENDED_IMAGES} recommended):"
                      " int8 ranges may not cover real fields", stacklevel=2)
    return Calibration(folder, tuple(paths), size, resize, stain)
