"""The summary's clinical keys from a stored session: why it stopped (its fields replayed
through the stop rule), estimates, flags with the thresholds the session ran with, the ALL
call."""

from __future__ import annotations

import numpy as np
import pytest

from edge.clinical.all_call import SESSION_AGGREGATION, all_call
from edge.clinical.estimates import REFERENCE_RBC_PER_UL, estimate
from edge.config import Profile
from edge.core.detections import Detections
from edge.core.labels import DETECTOR_CLASSES, FieldStatus, SessionStatus
from edge.core.records import FieldRecord
from edge.report.summary import session_summary
from edge.storage.store import Store

WBC_CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
               "neutrophil", "platelet"]


def _field(idx: int, wbc: int = 0, rbc: int = 0, platelets: int = 0,
           labels: list[str] | None = None, subtype: dict[str, float] | None = None,
           status: FieldStatus = FieldStatus.COUNTED) -> FieldRecord:
    if status is not FieldStatus.COUNTED:
        return FieldRecord(idx=idx, origin=f"f{idx}", captured_at="2026-12-01T08:00:00",
                           status=status, reason="out of focus")
    ids = [0] * wbc + [1] * rbc + [2] * platelets
    xy = np.arange(len(ids), dtype=np.float32)[:, None] * 3 + np.zeros((1, 2), np.float32)
    det = Detections.from_arrays(np.hstack([xy, xy + 2]), np.array(ids), np.full(len(ids), .9))
    labels = labels if labels is not None else ["neutrophil"] * wbc
    return FieldRecord(idx=idx, origin=f"f{idx}", captured_at="2026-12-01T08:00:00",
                       status=status, width=640, height=480, detections=det,
                       cell_labels={i: (label, 0.95, None) for i, label in enumerate(labels)},
                       subtype=subtype)


def _session(tmp_path, profile: dict, fields: list[FieldRecord],
             status: SessionStatus = SessionStatus.FINISHED) -> dict:
    store = Store.open(tmp_path)
    sid = store.start_session(
        sample_id="S", operator=None, profile_name="test",
        profile_json=Profile.model_validate(profile).model_dump_json(), source="folder:x",
        model_file="detector.onnx", model_sha256="a" * 64, classes=list(DETECTOR_CLASSES),
        version="0", classifiers=[{"role": "wbc", "file": "w.onnx", "sha256": "b" * 64,
                                   "classes": WBC_CLASSES}])
    for f in fields:
        store.add_field(sid, "a" * 64, list(DETECTOR_CLASSES), f)
    store.end_session(sid, status)
    return session_summary(store, sid)


DIFF_100 = {"classifiers": {"wbc": True}, "protocol": {"mode": "differential",
                                                         "white_cells": 100}}


def test_the_stop_is_replayed_from_the_stored_fields(tmp_path):
    fields = [_field(0, wbc=30), _field(1, status=FieldStatus.REJECTED), _field(2, wbc=30),
              _field(3, wbc=30), _field(4, wbc=12)]
    p = _session(tmp_path / "a", DIFF_100, fields)["protocol"]
    assert (p["stop"], p["white_cells"], p["fields"], p["fields_not_counted"]) == (
        "target reached", 102, 4, 1)
    assert p["progress"] == "white cells 102/100 · fields 4 · rejected 1 · target reached"
    short = _session(tmp_path / "b", DIFF_100, fields[:3])["protocol"]
    assert short["stop"] == "source ended" and short["white_cells"] == 60
    cut = _session(tmp_path / "c", DIFF_100, fields[:3], SessionStatus.INTERRUPTED)
    assert cut["protocol"]["stop"] == "interrupted"
    limited = _session(tmp_path / "d", {**DIFF_100, "protocol": {
        "mode": "differential", "white_cells": 400, "max_fields": 2}}, fields[:3])
    assert limited["protocol"]["stop"] == "field limit reached"


def test_a_session_from_before_the_protocol_gets_the_defaults(tmp_path):
    store = Store.open(tmp_path)
    sid = store.start_session(sample_id="S", operator=None, profile_name="old",
                              profile_json="{}", source="synthetic", model_file="d.onnx",
                              model_sha256="a" * 64, classes=list(DETECTOR_CLASSES),
                              version="0.1.0")
    store.add_field(sid, "a" * 64, list(DETECTOR_CLASSES), _field(0, wbc=1, rbc=20))
    store.end_session(sid, SessionStatus.FINISHED)
    summary = session_summary(store, sid)
    assert summary["protocol"]["mode"] == "cbc" and summary["protocol"]["stop"] == "source ended"


def test_estimates_use_the_calibrated_factor_else_the_red_cell_ratio(tmp_path):
    profile = {"protocol": {"wbc_field_factor": 1000.0,
                            "field_factor_source": "calibrated on 20 smears"}}
    fields = [_field(i, wbc=5, rbc=200, platelets=10) for i in range(12)]
    est = _session(tmp_path, profile, fields)["estimates"]
    wbc = estimate(60, 12, field_factor=1000.0)
    assert est["wbc"]["method"] == "calibrated field factor"
    assert est["wbc"]["field_factor_source"] == "calibrated on 20 smears"
    assert (est["wbc"]["per_ul"], est["wbc"]["per_ul_low"], est["wbc"]["per_ul_high"]) == (
        5000, round(wbc.per_ul_low), round(wbc.per_ul_high))
    assert est["platelets"]["method"] == "red-cell ratio"
    assert est["platelets"]["per_ul"] == round(120 / 2400 * REFERENCE_RBC_PER_UL)
    assert "2400 red cells" in est["platelets"]["field_factor_source"]
    assert est["rbc"]["per_field"] == 200 and est["rbc"]["per_ul"] is None
    assert est["rbc"]["per_field_low"] < 200 < est["rbc"]["per_field_high"]


def test_flags_use_the_thresholds_the_session_ran_with(tmp_path):
    labels = ["neutrophil"] * 3 + ["lymphocyte"] + ["ig"]
    fields = [_field(i, wbc=5, rbc=200, platelets=10, labels=labels) for i in range(12)]
    factor = {"wbc_field_factor": 1000.0, "field_factor_source": "calibration"}
    default = _session(tmp_path / "a", {"classifiers": {"wbc": True}, "protocol": factor},
                       fields)["flags"]
    assert [f["code"] for f in default] == ["immature-cells", "differential-imprecise"]
    assert all(set(f) == {"code", "text", "value", "threshold", "definite"} for f in default)
    strict = _session(tmp_path / "b", {"classifiers": {"wbc": True}, "protocol": {
        **factor, "flags": {"wbc_low_per_ul": 6000.0}}}, fields)["flags"]
    low = next(f for f in strict if f["code"] == "leukopenia")
    assert (low["value"], low["threshold"]) == (5000, 6000) and "5,000 /µL" in low["text"]
    few = _session(tmp_path / "c", {}, fields[:3])["flags"]
    assert few[0]["code"] == "too-few-fields" and few[0]["value"] == 3


def test_the_all_call_is_the_measured_aggregation_worded_as_a_screening_aid(tmp_path):
    rng = np.random.default_rng(3)
    subtypes = [dict(zip(["Benign", "Early", "Pre", "Pro"], p.tolist(), strict=True))
                for p in rng.dirichlet([1, 1, 4, 1], size=14)]
    fields = [_field(i, wbc=1, rbc=30, subtype=s) for i, s in enumerate(subtypes)]
    call = _session(tmp_path / "a", {}, fields)["all_call"]
    expected = all_call(subtypes, ["Benign", "Early", "Pre", "Pro"], SESSION_AGGREGATION)
    assert set(call) == {"call", "probability", "field_agreement", "fields", "aggregation",
                         "wording"}
    assert (call["call"], call["fields"], call["aggregation"]) == (
        expected.label, 14, SESSION_AGGREGATION)
    assert call["probability"] == pytest.approx(expected.probability, abs=1e-4)
    assert call["field_agreement"] == pytest.approx(expected.agreement, abs=1e-4)
    assert "suggest" in call["wording"] or "consistent with" in call["wording"]
    assert call["wording"].endswith("Confirm by smear review and immunophenotyping.")
    assert _session(tmp_path / "b", {}, [_field(0, wbc=1)])["all_call"] is None
