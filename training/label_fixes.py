"""Corrections to training labels, reviewed by eye and kept in a JSON file beside the code.

A fix names an image by its content hash (the merged set's file name), a box in pixels
(x1, y1, x2, y2) and what to do with it:

- `remove`: drop the labelled box of `class` that the box matches (IoU >= 0.9);
- `relabel`: give that box the class `to`;
- `add`: label the box as `class`.

Fixes are for training images only: the val split is measured against its labels as
published. A fix that names no merged image, lands in val or matches no labelled box is an
error, so a file written for one version of the data cannot quietly do nothing on another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.core.labels import DETECTOR_CLASSES
from training.datasets import Box, DatasetError, Sample
from training.metrics import box_iou

MATCH_IOU = 0.9


class LabelFix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=16, description="content sha256 of the image (a prefix)")
    action: Literal["remove", "relabel", "add"]
    cls: Literal[DETECTOR_CLASSES] = Field(alias="class")  # type: ignore[valid-type]
    to: Literal[DETECTOR_CLASSES] | None = None  # type: ignore[valid-type]
    box: tuple[float, float, float, float]
    finding: str = Field(min_length=1, description="what the reviewer saw")

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, ...]:
        if not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
            raise ValueError("a box is x1, y1, x2, y2 with 0 <= x1 < x2 and 0 <= y1 < y2")
        return box


class LabelFixFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    about: str
    fixes: list[LabelFix]


@dataclass(frozen=True)
class LoadedFixes:
    path: Path
    sha256: str
    fixes: list[LabelFix]

    def apply(self, samples: dict[str, Sample]) -> int:
        """Apply the fixes to merged samples (keyed by content sha256, split assigned) in
        place; returns how many were applied."""
        sizes: dict[str, tuple[int, int]] = {}
        for n, fix in enumerate(self.fixes):
            where = f"{self.path}: fixes.{n} ({fix.image})"
            sha = _image(samples, fix, where)
            if sha not in sizes:
                sizes[sha] = _size(samples[sha].image, where)
            _apply(samples[sha], fix, *sizes[sha], where=where)
        return len(self.fixes)


def load_label_fixes(path: Path) -> LoadedFixes:
    """Read and check a label-fix file; a malformed one raises DatasetError naming the entry."""
    raw = path.read_bytes()
    try:
        parsed = LabelFixFile.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "file"
        raise DatasetError(f"{path}: {where}: {err['msg']}") from None
    for n, fix in enumerate(parsed.fixes):
        if (fix.action == "relabel") != (fix.to is not None):
            raise DatasetError(f"{path}: fixes.{n}: 'to' is required by relabel and only there")
    return LoadedFixes(path, hashlib.sha256(raw).hexdigest(), parsed.fixes)


def _image(samples: dict[str, Sample], fix: LabelFix, where: str) -> str:
    shas = [sha for sha in samples if sha.startswith(fix.image)]
    if len(shas) != 1:
        raise DatasetError(f"{where}: no merged image has this content hash" if not shas
                           else f"{where}: the hash prefix is ambiguous")
    if samples[shas[0]].split == "val":
        raise DatasetError(f"{where}: the image is in val; val labels are not corrected")
    return shas[0]


def _size(path: Path, where: str) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{where}: cannot read {path}: a label fix needs the image's size")
    return image.shape[1], image.shape[0]


def _apply(sample: Sample, fix: LabelFix, width: int, height: int, where: str) -> None:
    cls = DETECTOR_CLASSES.index(fix.cls)
    if fix.box[2] > width or fix.box[3] > height:
        raise DatasetError(f"{where}: box {list(fix.box)} lies outside the {width}x{height} image")
    if fix.action == "add":
        sample.boxes.append(Box.from_xyxy(cls, *fix.box, width, height))
        return
    labelled = np.array([b.xyxy(width, height) for b in sample.boxes]).reshape(-1, 4)
    ious = box_iou(labelled, np.array([fix.box]))[:, 0]
    matches = [i for i, b in enumerate(sample.boxes) if b.class_id == cls and ious[i] >= MATCH_IOU]
    if len(matches) != 1:
        raise DatasetError(f"{where}: {'no' if not matches else len(matches)} {fix.cls} boxes "
                           f"match {list(fix.box)}" + (" (ambiguous)" if matches else ""))
    if fix.action == "remove":
        del sample.boxes[matches[0]]
    else:
        sample.boxes[matches[0]] = replace(sample.boxes[matches[0]],
                                           class_id=DETECTOR_CLASSES.index(fix.to))
