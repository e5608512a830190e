"""The second stage of a field: the WBC differential on every white-cell (`WBC`) box and the
ALL subtype scores of the whole field, each fed exactly as its classifier was trained. Red
cells (`RBC`) are the ruler: about 7.5 um across in every smear."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import ClassifiersConfig
from edge.core.detections import Detections
from edge.core.errors import HemascopeError
from edge.core.labels import NOT_WHITE_CELLS, RBC, WBC
from edge.inference.classifier import Classifier, resize_rgb
from edge.pipeline.scale import rbc_diameter

# What a session records of a calibrated classifier's provenance.
CALIBRATION_KEYS = ("base_file", "base_sha256", "sessions", "reviewed_cells",
                    "cross_validated_accuracy", "created_at")
WBC_IN_RBC_DIAMETERS = 1.8  # typical white cell size, when a field has too few red cells


def white_cell_class(classes: list[str], probs: np.ndarray) -> int:
    """The most probable class that is a white cell (the detector found one): a probability
    taken by a non-white-cell class (platelet) lowers the score kept, which flags the cell
    for review, instead of naming a white cell a platelet."""
    allowed = np.array([c not in NOT_WHITE_CELLS for c in classes])
    return int(np.where(allowed, probs, -1.0).argmax()) if allowed.any() else int(probs.argmax())


def square_crop(image: np.ndarray, box: np.ndarray, side: float) -> np.ndarray:
    """A square crop of `side` pixels centred on `box`; parts outside the field are filled by
    replicating the border (a cell at the edge stays centred, as in the training crops)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(2, round(side))
    left = round((x1 + x2) / 2 - side / 2)
    top = round((y1 + y2) / 2 - side / 2)
    h, w = image.shape[:2]
    pad = (max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w))
    if any(pad):
        image = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE)
        top, left = top + pad[0], left + pad[2]
    return image[top:top + side, left:left + side]


@dataclass(frozen=True)
class CellLabel:
    """The differential class of one detected white cell, and what the classifier saw."""

    cell: int  # row in the field's detections
    label: str
    score: float
    model_input: np.ndarray  # the RGB uint8 crop at the classifier's size


@dataclass(frozen=True)
class Subtype:
    """The ALL subtype probabilities of one field, and the field as the classifier saw it."""

    probabilities: dict[str, float]
    model_input: np.ndarray  # the RGB uint8 field at the ALL classifier's size
    ms: float


@dataclass(frozen=True)
class FieldLabels:
    cells: list[CellLabel]
    subtype: dict[str, float] | None  # ALL subtype probabilities, when enabled
    subtype_input: np.ndarray | None  # the RGB uint8 field at the ALL classifier's size
    classify_ms: float  # both models on this field (the ALL subtype timed where it ran)


class FieldClassifiers:
    """The classifiers a profile enables; each model is verified against its manifest (and
    its signature by one of `trusted_keys`, when given)."""

    def __init__(self, config: ClassifiersConfig, detector_classes: list[str],
                 trusted_keys: Sequence[str] | None = None) -> None:
        self.config = config  # classifiers ship as ONNX and run on onnxruntime on every device
        self.wbc = (Classifier(config.wbc_model, threads=config.threads,
                               trusted_keys=trusted_keys) if config.wbc else None)
        self.subtype = (Classifier(config.all_model, threads=config.threads,
                                   trusted_keys=trusted_keys) if config.all_subtype else None)
        if self.wbc is not None and WBC not in detector_classes:
            raise HemascopeError(
                f"the detector has no {WBC!r} class to classify (it has "
                f"{', '.join(detector_classes)})",
                "use a blood-cell detector, or set classifiers.wbc = false")
        self.wbc_class_id = detector_classes.index(WBC) if self.wbc is not None else -1
        self.rbc_class_id = detector_classes.index(RBC) \
            if RBC in detector_classes else -1
        self.rulers: list[float] = []  # red-cell diameters of this session's fields so far

    def _ruler(self, det: Detections, shape: tuple[int, int]) -> float | None:
        """Red-cell diameter in pixels: this field's, else the median of the session's fields
        so far (a field of mostly white cells), else None."""
        here = rbc_diameter(det, self.rbc_class_id, shape)
        if here is not None:
            self.rulers.append(here)
            return here
        return float(np.median(self.rulers)) if self.rulers else None

    def new_session(self) -> None:
        """Forget the previous slide's red-cell size."""
        self.rulers.clear()

    @property
    def enabled(self) -> bool:
        return self.wbc is not None or self.subtype is not None

    def models(self) -> list[dict[str, object]]:
        """What each enabled classifier is, for the session record: its file, sha256, digest
        (model and manifest), signer when checked, classes, and its site calibration's
        provenance when it has one."""
        return [{"role": role, "file": c.manifest.file, "sha256": c.sha256,
                 "digest": c.digest, **({"signed_by": c.signer} if c.signer else {}),
                 "classes": c.classes,
                 **({"calibration": {k: c.manifest.calibration.get(k) for k in CALIBRATION_KEYS}}
                    if c.calibrated else {})}
                for role, c in (("wbc", self.wbc), ("all_subtype", self.subtype))
                if c is not None]

    def subtype_of(self, image_bgr: np.ndarray) -> Subtype | None:
        """The ALL subtype of a field (None when that classifier is off); it needs no
        detections, so the runner scores a field while the detector is busy elsewhere."""
        if self.subtype is None:
            return None
        t0 = time.perf_counter()
        model_input = resize_rgb(image_bgr, self.subtype.size)
        probs = self.subtype.probabilities([model_input])[0]
        return Subtype({c: float(p) for c, p in zip(self.subtype.classes, probs, strict=True)},
                       model_input, (time.perf_counter() - t0) * 1e3)

    def __call__(self, image_bgr: np.ndarray, det: Detections,
                 subtype: Subtype | None = None) -> FieldLabels:
        """Every enabled classifier on one field; `subtype`, when given, is the field's
        `subtype_of` computed earlier."""
        t0 = time.perf_counter()
        cells: list[CellLabel] = []
        if self.wbc is not None:
            ruler = self._ruler(det, image_bgr.shape[:2])
            for i in np.flatnonzero(det.class_id == self.wbc_class_id):
                x1, y1, x2, y2 = det.xyxy[i]
                rbc = ruler or max(x2 - x1, y2 - y1) / WBC_IN_RBC_DIAMETERS
                side = self.config.crop_rbc_diameters * rbc
                crop = resize_rgb(square_crop(image_bgr, det.xyxy[i], side), self.wbc.size)
                probs = self.wbc.probabilities([crop])[0]
                cid = white_cell_class(self.wbc.classes, probs)
                cells.append(CellLabel(int(i), self.wbc.classes[cid], float(probs[cid]), crop))
        cells_ms = (time.perf_counter() - t0) * 1e3
        if subtype is None:
            subtype = self.subtype_of(image_bgr)
        if subtype is None:
            return FieldLabels(cells, None, None, cells_ms)
        return FieldLabels(cells, subtype.probabilities, subtype.model_input,
                           cells_ms + subtype.ms)
