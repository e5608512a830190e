"""Folders of field images for real sessions, and a session run through the real pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import FolderSource
from edge.capture.synthetic import BACKGROUND_BGR, WBC, SyntheticSource
from edge.config import Profile
from edge.inference.detector import Detector
from edge.pipeline.runner import Runner
from edge.pipeline.second_stage import FieldClassifiers
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL


def bccd_slide(folder: Path, datasets: Path, n: int = 6) -> Path:
    """`n` BCCD fields, then a re-capture of the last one (rejected: duplicate), a blank
    frame (rejected: uniform) and a truncated JPEG (unreadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:n]
    for i, p in enumerate(images):
        shutil.copy(p, folder / f"f{i:02d}.jpg")
    shutil.copy(images[-1], folder / f"f{n:02d}.jpg")
    cv2.imwrite(str(folder / f"f{n + 1:02d}.png"), np.full((480, 640, 3), 200, np.uint8))
    (folder / f"f{n + 2:02d}.jpg").write_bytes(images[0].read_bytes()[:4000])
    return folder


def slide_without_white_cells(folder: Path, n: int = 4) -> Path:
    """Synthetic fields with every white cell painted over with plasma: red cells and
    platelets only."""
    folder.mkdir(parents=True, exist_ok=True)
    for frame in SyntheticSource(count=n, seed=7).frames():
        image = frame.image.copy()
        for box, cls in zip(frame.truth.xyxy.astype(int), frame.truth.class_id, strict=True):
            if cls == WBC:
                x1, y1, x2, y2 = box
                image[max(0, y1):y2, max(0, x1):x2] = BACKGROUND_BGR
        cv2.imwrite(str(folder / f"f{frame.index:02d}.png"), image)
    return folder


def run_session(data_dir: Path, folder: Path, sample: str, operator: str | None = "amina",
                classifiers: bool = True, clear_ids: bool = False) -> str:
    """Run the real pipeline (bundled models; with the WBC differential and the ALL subtype
    when `classifiers`; ids kept in clear when `clear_ids`) on every image of `folder`; the
    new session's id."""
    profile = Profile()
    profile.privacy.keep_clear_ids = clear_ids
    profile.classifiers.wbc = profile.classifiers.all_subtype = classifiers
    profile.storage.data_dir = data_dir
    detector = Detector(BUNDLED_MODEL, threads=1)
    store = Store.open(data_dir)
    try:
        return Runner(profile, store, detector,
                      FieldClassifiers(profile.classifiers, detector.classes)
                      ).run(FolderSource(folder, profile.source), sample, operator)
    finally:
        store.close()
