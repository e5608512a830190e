"""A deterministic finished session, for the golden payload and schema fixtures.

Everything the store stamps itself (session id, start, end and telemetry times) is replaced
by fixed values afterwards, and the device secret is a fixed one, so the payload bytes
depend on the code alone. The session is stored with its ids in clear (as
`privacy.keep_clear_ids = true` stores them): the payload carries their pseudonyms.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from edge.core.detections import Detections
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage import layout
from edge.storage.store import Store

FIXTURES = Path(__file__).parents[1] / "fixtures"
SESSION_ID = "0123456789abcdef0123456789abcdef"
CLASSES = ["WBC", "RBC", "Platelets"]
MODEL_SHA = "a" * 64
WBC_SHA = "b" * 64
EVIDENCE = bytes(range(256)) * 3  # stands in for a JPEG: the payload carries it as base64
SECRET = bytes(range(32))  # the device secret of the golden device


def _field(idx: int) -> FieldRecord:
    k = 3 + idx
    xy = np.arange(2 * k, dtype=np.float32).reshape(k, 2) * 17.25 + idx
    det = Detections.from_arrays(np.hstack([xy, xy + 21.5]), np.arange(k) % 3,
                                 np.linspace(0.35, 0.95, k, dtype=np.float32))
    return FieldRecord(idx=idx, origin=f"f{idx}.jpg", captured_at=f"2026-11-24T08:00:0{idx}",
                       status="counted", width=640, height=480, detections=det,
                       evidence_path=f"evidence/{SESSION_ID}/{idx:05d}.jpg",
                       timings_ms={"decode": 1.5, "preprocess": 2.25, "infer": 10.125 + idx,
                                   "postprocess": 0.5, "classify": 3.0},
                       qc={"focus": 12.5, "exposure": 0.5},
                       cell_labels={0: ("neutrophil", 0.91234567,
                                        f"evidence/{SESSION_ID}/{idx:05d}-cell000.png")},
                       subtype={"Benign": 0.75, "Pro-B": 0.25})


def make_golden_session(data_dir: Path) -> str:
    """Store one finished session (two counted fields, a rejected and a skipped one) and
    return its fixed id; the outbox holds its payload, version 1."""
    store = Store.open(data_dir)
    (data_dir / layout.DEVICE_SECRET).write_bytes(SECRET)
    sid = store.start_session(
        sample_id="S-GOLD", operator="amina", profile_name="golden",
        profile_json=json.dumps({"sync": {"evidence": True, "evidence_max_kb": 1}}),
        source="synthetic:7", model_file="detector.onnx", model_sha256=MODEL_SHA,
        classes=CLASSES, version="0.1.0",
        classifiers=[{"task": "wbc", "file": "wbc-differential.onnx", "sha256": WBC_SHA}])
    store.add_telemetry(sid, {"cpu_temp_c": 51.5})
    store.close()
    # The id is random and the times are the clock's: fix them before any field refers to them.
    conn = sqlite3.connect(data_dir / "hemascope.db")
    conn.execute("UPDATE sessions SET id = ?, started_at = '2026-11-24T07:59:00.000+00:00'",
                 (SESSION_ID,))
    conn.execute("UPDATE telemetry SET session_id = ?, at = '2026-11-24T07:59:00.001+00:00'",
                 (SESSION_ID,))
    conn.commit()
    conn.close()
    store = Store.open(data_dir)
    for idx in range(2):
        record = _field(idx)
        (data_dir / record.evidence_path).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / record.evidence_path).write_bytes(EVIDENCE)
        store.add_field(SESSION_ID, MODEL_SHA, CLASSES, record)
    store.add_field(SESSION_ID, MODEL_SHA, CLASSES, FieldRecord(
        idx=2, origin="f2.jpg", captured_at="2026-11-24T08:00:02", status="rejected",
        reason="out of focus", width=640, height=480, qc={"focus": 1.0},
        timings_ms={"decode": 1.0}))
    store.add_field(SESSION_ID, MODEL_SHA, CLASSES, FieldRecord(
        idx=3, origin="f3.jpg", captured_at="2026-11-24T08:00:03", status="skipped",
        reason="unreadable image", timings_ms={"decode": 0.25}))
    finish_session(store, SESSION_ID)
    store.close()
    return SESSION_ID


def golden_body(data_dir: Path) -> bytes:
    """The session's payload bytes (version 1) with the clock's end time replaced by a fixed
    one, as the device queued them."""
    conn = sqlite3.connect(data_dir / "hemascope.db")
    ended_at, = conn.execute("SELECT ended_at FROM sessions WHERE id = ?",
                             (SESSION_ID,)).fetchone()
    body, = conn.execute("SELECT body FROM outbox WHERE payload_key = ? AND version = 1",
                         (SESSION_ID,)).fetchone()
    conn.close()
    return body.replace(ended_at.encode(), b"2026-11-24T08:01:00.000+00:00")
