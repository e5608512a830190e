"""The FHIR R4 bundle of real sessions, validated with fhir.resources (R4B: its Bundle,
DiagnosticReport, Observation, Specimen and Device are R4's), and its codes against the table
in docs/reports.md."""

from __future__ import annotations

import base64
import copy
import re

import pytest

from edge.core.errors import HemascopeError
from edge.core.labels import SessionStatus
from edge.report.fhir import (
    DIFFERENTIAL_CODES,
    ERYTHROBLAST_CODE,
    ESTIMATE_CODES,
    LOINC,
    REPORT_CODE,
    differential_values,
    fhir_bundle,
    validate,
)
from tests.conftest import ROOT
from tests.edge.report.test_html import _with_other_parts

bundle_model = pytest.importorskip("fhir.resources.R4B.bundle")
NOW = "2026-12-07T10:00:00+00:00"


# fhir.resources checks structure, cardinality and types, not required value-set bindings:
# the codes bound "required" in R4 are checked here.
REPORT_STATUS = {"registered", "partial", "preliminary", "final", "amended", "corrected",
                 "appended", "cancelled", "entered-in-error", "unknown"}
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
DEVICE_NAME_TYPE = {"udi-label-name", "user-friendly-name", "patient-reported-name",
                    "manufacturer-name", "model-name", "other"}
SPECIMEN_STATUS = {"available", "unavailable", "unsatisfactory", "entered-in-error"}


def _validated(bundle: dict) -> dict:
    bundle_model.Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    assert _resources(bundle, "DiagnosticReport")[0]["status"] in REPORT_STATUS
    assert {o["status"] for o in _resources(bundle, "Observation")} <= OBSERVATION_STATUS
    assert {n["type"] for n in _resources(bundle, "Device")[0]["deviceName"]} <= \
        DEVICE_NAME_TYPE
    assert _resources(bundle, "Specimen")[0]["status"] in SPECIMEN_STATUS
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls)
    refs = re.findall(r"'reference': '([^']+)'", str(bundle))
    assert refs and set(refs) <= set(urls)  # every reference resolves inside the bundle
    return bundle


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _by_code(bundle: dict) -> dict[str, dict]:
    return {o["code"]["coding"][0]["code"]: o for o in _resources(bundle, "Observation")}


def _component(obs: dict, code: str) -> float:
    return next(c["valueQuantity"]["value"] for c in obs["component"]
                if c["code"]["coding"][0]["code"] == code)


def test_the_bundle_of_a_real_session_validates_and_carries_every_figure(sessions):
    s = sessions.summary(sessions.slide)
    bundle = _validated(fhir_bundle(s, NOW))
    report = _resources(bundle, "DiagnosticReport")[0]
    assert report["status"] == "preliminary" and "Not reviewed" in report["conclusion"]
    assert report["code"]["coding"][0]["code"] == REPORT_CODE[0]
    assert report["identifier"][0]["value"].replace("-", "").endswith(s["session_id"])
    assert len(report["result"]) == len(_resources(bundle, "Observation"))
    assert "presentedForm" not in report
    obs = _by_code(bundle)
    for c in s["classes"]:
        assert obs[f"count-{c.lower()}"]["valueQuantity"]["value"] == s["totals"][c]
        assert obs[f"per-field-{c.lower()}"]["valueQuantity"]["value"] == \
            round(s["mean_per_field"][c], 3)
    diff = s["differential"]
    blasts = diff["counts"].get("erythroblast", 0)
    leukocytes = sum(diff["counts"].values()) - blasts  # erythroblasts are not leukocytes
    for label, (code, display) in DIFFERENTIAL_CODES.items():
        if label == "blast":  # not a class of today's model
            assert code not in obs
            continue
        o = obs[code]
        assert o["code"]["coding"][0] == {"system": LOINC, "code": code, "display": display}
        n = diff["counts"].get(label, 0)
        assert o["valueQuantity"] == {"value": round(100 * n / leukocytes, 2), "unit": "%",
                                      "system": "http://unitsofmeasure.org", "code": "%"}
        if not blasts:  # then shares and intervals are those of the summary and the HTML
            low, high = diff["interval_95"][label]
            assert _component(o, "ci95-low") == pytest.approx(low, abs=0.051)
            assert _component(o, "ci95-high") == pytest.approx(high, abs=0.051)
        assert _component(o, "cells") == n and o["status"] == "preliminary"
    assert obs[ERYTHROBLAST_CODE[0]]["valueQuantity"]["value"] == \
        round(100 * blasts / leukocytes, 2)
    assert obs["white-cells-classified"]["valueQuantity"]["value"] == diff["classified"]
    device = _resources(bundle, "Device")[0]
    digests = {v["value"] for v in device["version"]}
    assert {s["model"]["sha256"], *(m["sha256"] for m in s["classifiers"])} <= digests
    specimen = _resources(bundle, "Specimen")[0]
    assert specimen["identifier"][0]["value"] == s["sample_id"]
    assert fhir_bundle(s, NOW) == bundle  # same session, same ids and content


def test_the_validator_used_here_rejects_a_broken_bundle(sessions):
    bundle = fhir_bundle(sessions.summary(sessions.slide), NOW)
    broken = copy.deepcopy(bundle)
    del _resources(broken, "DiagnosticReport")[0]["status"]
    with pytest.raises(ValueError, match="status"):
        bundle_model.Bundle.model_validate(broken)
    broken = copy.deepcopy(bundle)
    _resources(broken, "DiagnosticReport")[0]["issued"] = "yesterday"
    with pytest.raises(ValueError, match="issued"):
        bundle_model.Bundle.model_validate(broken)
    broken = copy.deepcopy(bundle)
    del _resources(broken, "Observation")[0]["code"]
    with pytest.raises(ValueError, match="code"):
        bundle_model.Bundle.model_validate(broken)
    assert validate(bundle) is True  # what `hemascope report --fhir` runs before writing
    with pytest.raises(HemascopeError, match="failed validation"):
        validate(broken)


def test_a_reviewed_session_reports_the_reviewed_figures_beside_the_model(sessions):
    s = _with_other_parts(sessions.summary(sessions.slide))
    bundle = _validated(fhir_bundle(s, NOW, pdf=b"%PDF-1.7 report"))
    report = _resources(bundle, "DiagnosticReport")[0]
    assert report["status"] == "final"
    assert report["resultsInterpreter"] == [{"display": "amina"}]
    assert "Reviewed: " in report["conclusion"] and "Flag: only 6 accepted fields" in \
        report["conclusion"] and s["all_call"]["wording"] in report["conclusion"]
    form = report["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]) == b"%PDF-1.7 report"
    obs = _by_code(bundle)
    review = s["review"]
    total = sum(review["reviewed_counts"].values())
    lymph = obs[DIFFERENTIAL_CODES["lymphocyte"][0]]
    assert lymph["status"] == "final" and "verified by a person" in lymph["method"]["text"]
    assert lymph["valueQuantity"]["value"] == round(100 * review["reviewed_counts"]["lymphocyte"]
                                                    / total, 2)
    assert _component(lymph, "model-value") == round(
        100 * review["model_counts"].get("lymphocyte", 0) / total, 2)
    wbc = obs[ESTIMATE_CODES["WBC"][0]]
    assert wbc["valueQuantity"] == {"value": 6543, "unit": "/µL",
                                    "system": "http://unitsofmeasure.org", "code": "/uL"}
    assert (_component(wbc, "ci95-low"), _component(wbc, "ci95-high")) == (3300, 9900)
    assert obs[ESTIMATE_CODES["Platelets"][0]]["valueQuantity"]["value"] == 150000
    assert obs["all-subtype-call"]["valueCodeableConcept"]["text"] == "Benign"
    assert _component(obs["all-subtype-call"], "field-agreement") == 0.83


def test_an_interrupted_session_is_a_partial_report(sessions):
    s = copy.deepcopy(sessions.summary(sessions.slide))
    s["status"] = SessionStatus.INTERRUPTED
    report = _resources(_validated(fhir_bundle(s, NOW)), "DiagnosticReport")[0]
    assert report["status"] == "partial" and "Session interrupted" in report["conclusion"]


def test_a_session_without_white_cells_has_counts_and_no_differential(sessions):
    bundle = _validated(fhir_bundle(sessions.summary(sessions.no_white_cells), NOW))
    obs = _by_code(bundle)
    assert obs["count-wbc"]["valueQuantity"]["value"] == 0
    assert not set(obs) & {code for code, _ in DIFFERENTIAL_CODES.values()}
    assert "No white cells found" in _resources(bundle, "DiagnosticReport")[0]["conclusion"]


def test_erythroblasts_are_per_100_leukocytes_and_not_among_them():
    values = {label: v for label, *v in differential_values(
        {"neutrophil": 81, "lymphocyte": 9, "erythroblast": 10})}
    assert values["neutrophil"][1] == pytest.approx(90.0)  # 81 of 90 leukocytes
    assert values["lymphocyte"][1] == pytest.approx(10.0)
    k, ratio, low, high = values["erythroblast"]
    assert (k, ratio) == (10, pytest.approx(100 * 10 / 90))
    assert 0 < low < ratio < high
    assert differential_values({"erythroblast": 3}) == []  # no leukocyte: no ratio


def test_the_code_table_in_the_docs_is_the_code_table_used():
    text = (ROOT / "docs" / "reports.md").read_text()
    rows = set(re.findall(r"^\| `?([\w-]+)`? \| `(\d+-\d)` \| ([^|]+?) \|", text, re.M))
    used = {(k, code, display) for k, (code, display) in DIFFERENTIAL_CODES.items()}
    used |= {("erythroblast", *ERYTHROBLAST_CODE), ("report", *REPORT_CODE)}
    used |= {(k, code, display) for k, (code, display) in ESTIMATE_CODES.items()}
    assert used <= rows, used - rows
