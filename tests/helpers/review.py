"""A finished session with classified white cells, their crops and evidence images on disk,
made through the Store API (fast and exact), for the review tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.core.detections import Detections
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage import layout
from edge.storage.store import Store

CLASSES = ["WBC", "RBC", "Platelets"]
WBC_CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
               "neutrophil", "platelet"]
MODEL_SHA = "d" * 64
WBC_SHA = "e" * 64
# per field: the differential's (class, score) of each white cell; one RBC follows them
FIELDS = (
    [("neutrophil", 0.95), ("neutrophil", 0.91), ("lymphocyte", 0.88)],
    [("neutrophil", 0.55), ("monocyte", 0.81)],
    [("lymphocyte", 0.97), ("eosinophil", 0.72), ("neutrophil", 0.93)],
)
_COLOURS = {"neutrophil": (180, 120, 200), "lymphocyte": (150, 60, 110),
            "monocyte": (170, 140, 160), "eosinophil": (60, 90, 220)}


def _png(path: Path, colour: tuple[int, int, int], tag: str, size: int = 64) -> None:
    """A round 'cell' with a tag written on it, so no two crops share their bytes."""
    image = np.full((size, size, 3), 235, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 3, colour, -1)
    cv2.putText(image, tag, (2, size - 4), cv2.FONT_HERSHEY_PLAIN, 0.7, (90, 90, 90), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def make_review_session(data_dir: Path, operator: str | None = "amina",
                        fields: tuple = FIELDS, finish: bool = True, wbc: bool = True) -> str:
    """Store a session whose fields hold `fields` white cells (and one red cell each), with
    each crop `NNNNN-cellKKK.png` and each annotated field `NNNNN.jpg`; finished (its
    payload version 1 queued) unless `finish` is False."""
    store = Store.open(data_dir)
    sid = store.start_session(
        sample_id="S-REVIEW", operator=operator, profile_name="test", profile_json="{}",
        source="folder:/slides/7", model_file="detector.onnx", model_sha256=MODEL_SHA,
        classes=CLASSES, version="0.1.0",
        classifiers=[{"role": "wbc", "file": "wbc-differential.onnx", "sha256": WBC_SHA,
                      "classes": WBC_CLASSES}] if wbc else [])
    for idx, cells in enumerate(fields):
        k = len(cells)
        boxes = np.array([[10 + 40 * i, 10, 40 + 40 * i, 40] for i in range(k + 1)], np.float32)
        det = Detections.from_arrays(boxes, np.array([0] * k + [1]),
                                     np.full(k + 1, 0.9, np.float32))
        labels = {}
        for i, (label, score) in enumerate(cells):
            crop = layout.cell_input(sid, idx, i)
            _png(data_dir / crop, _COLOURS.get(label, (120, 120, 120)), f"{sid[:4]}{idx}{i}")
            labels[i] = (label, score, crop)
        evidence = layout.field_image(sid, idx)
        image = np.full((240, 320, 3), 220, np.uint8)
        cv2.putText(image, f"field {idx}", (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 0), 2)
        cv2.imwrite(str(data_dir / evidence), image)
        store.add_field(sid, MODEL_SHA, CLASSES, FieldRecord(
            idx=idx, origin=f"f{idx}.jpg", captured_at=f"2026-12-01T09:00:0{idx}",
            status="counted", width=320, height=240, detections=det, evidence_path=evidence,
            cell_labels=labels if wbc else None))
    if finish:
        finish_session(store, sid)
    store.close()
    return sid


def payload_versions(data_dir: Path, session_id: str) -> list[int]:
    store = Store.open(data_dir)
    try:
        return [r[0] for r in store.conn.execute(
            "SELECT version FROM outbox WHERE payload_key = ? ORDER BY version", (session_id,))]
    finally:
        store.close()
