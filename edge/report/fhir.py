"""The FHIR R4 report of a session: a Bundle (type collection) of a DiagnosticReport, its
Observations (LOINC-coded where LOINC has a code, see docs/reports.md), the Specimen and the
Device with every model's sha256, and the PDF report as presentedForm when one was made.

Plain dicts from the standard library: the device builds the bundle without a FHIR package.
With the `report` extra (`fhir.resources`) installed, `validate` checks it before it is
written. Resource ids are derived from the session id, so the same session always gives the
same ids (a laboratory system can deduplicate).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from edge import __version__
from edge.clinical.intervals import proportion_interval
from edge.core.errors import HemascopeError
from edge.core.labels import PLATELETS, WBC, SessionStatus
from edge.report.figures import estimates_by_class, white_classes

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LOCAL = "urn:hemascope:codes"  # hemascope's own codes, for what LOINC has no code for

REPORT_CODE = ("69738-3", "Differential panel, method unspecified - Blood")
# Differential classes: LOINC's "by Automated count" terms (the device pre-classifies every
# cell; LOINC has no "computer-assisted" method for a blood differential).
DIFFERENTIAL_CODES = {
    "neutrophil": ("770-8", "Neutrophils/100 leukocytes in Blood by Automated count"),
    "lymphocyte": ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count"),
    "monocyte": ("5905-5", "Monocytes/100 leukocytes in Blood by Automated count"),
    "eosinophil": ("713-8", "Eosinophils/100 leukocytes in Blood by Automated count"),
    "basophil": ("706-2", "Basophils/100 leukocytes in Blood by Automated count"),
    "ig": ("71695-1", "Immature granulocytes/100 leukocytes in Blood by Automated count"),
    "blast": ("26446-5", "Blasts/100 leukocytes in Blood"),
}
ERYTHROBLAST = "erythroblast"  # reported per 100 leukocytes, not as a share of them
ERYTHROBLAST_CODE = ("58413-6",
                     "Nucleated erythrocytes/100 leukocytes [Ratio] in Blood by Automated count")
# Smear estimates: mean cells per field times the device's field factor.
ESTIMATE_CODES = {
    WBC: ("49498-9", "Leukocytes [#/volume] in Blood by Estimate"),
    PLATELETS: ("49497-1", "Platelets [#/volume] in Blood by Estimate"),
}
METHOD = "Automated classification of digital images of a stained blood smear (hemascope)"
METHOD_REVIEWED = METHOD + ", verified by a person on the device"

PERCENT = {"unit": "%", "system": UCUM, "code": "%"}
PER_UL = {"unit": "/µL", "system": UCUM, "code": "/uL"}
PER_FIELD = {"unit": "cells per field", "system": UCUM, "code": "{cells}/{field}"}
CELLS = {"unit": "cells", "system": UCUM, "code": "{cells}"}
PER_100_WBC = {"unit": "/100 WBC", "system": UCUM, "code": "/100{WBCs}"}


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _quantity(value: float, unit: dict[str, str], digits: int = 2) -> dict[str, Any]:
    return {"value": round(value, digits), **unit}


def _component(code: str, display: str, value: float | None, unit: dict[str, str],
               digits: int = 2) -> list[dict[str, Any]]:
    """A component with a local code, or none when there is no value."""
    if value is None:
        return []
    return [{"code": _coding(LOCAL, code, display),
             "valueQuantity": _quantity(value, unit, digits)}]


def _interval(low: float | None, high: float | None, unit: dict[str, str],
              digits: int = 2) -> list[dict[str, Any]]:
    return (_component("ci95-low", "95 % confidence interval, lower limit", low, unit, digits)
            + _component("ci95-high", "95 % confidence interval, upper limit", high, unit,
                         digits))


def differential_values(counts: dict[str, int]) -> list[tuple[str, int, float, float, float]]:
    """(label, cells, value, 95 % low, 95 % high) as LOINC defines the values: each white-cell
    class per 100 leukocytes (erythroblasts are not leukocytes), erythroblasts per 100
    leukocytes (the ratio p / (1 - p) of their share p among all classified cells, its interval
    mapped the same way). Empty when no leukocyte was classified."""
    n = sum(counts.values())
    blasts = counts.get(ERYTHROBLAST, 0)
    leukocytes = n - blasts
    if leukocytes <= 0:
        return []

    def ratio(p: float) -> float:
        return 100 * p / (1 - p)

    out = []
    for label, k in counts.items():
        if label == ERYTHROBLAST:
            iv = proportion_interval(k, n)
            out.append((label, k, ratio(k / n), ratio(iv.low), ratio(iv.high)))
        else:
            iv = proportion_interval(k, leukocytes)
            out.append((label, k, 100 * k / leukocytes, 100 * iv.low, 100 * iv.high))
    return out


def _ids(session_id: str) -> Any:
    def make(name: str) -> str:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'hemascope:{session_id}:{name}')}"
    return make


def fhir_bundle(summary: dict[str, Any], generated_at: str, pdf: bytes | None = None
                ) -> dict[str, Any]:
    """The Bundle of `summary`'s session. DiagnosticReport.status is "partial" for an
    interrupted session, "final" when a person reviewed the cells (summary["review"]), else
    "preliminary"; its Observations are "final" or "preliminary" alike."""
    s = summary
    ref = _ids(s["session_id"])
    review = s.get("review")
    reviewed = bool(review)
    report_status = ("partial" if s["status"] == SessionStatus.INTERRUPTED
                     else "final" if reviewed else "preliminary")
    obs_status = "final" if reviewed else "preliminary"
    effective = s["ended_at"] or s["started_at"]
    device, specimen = ref("device"), ref("specimen")
    observations: list[dict[str, Any]] = []

    def observation(name: str, code: dict[str, Any], value: dict[str, Any],
                    components: list[dict[str, Any]], method: str = METHOD,
                    note: str | None = None) -> None:
        obs = {"resourceType": "Observation", "status": obs_status,
               "category": [_coding("http://terminology.hl7.org/CodeSystem/observation-category",
                                    "laboratory", "Laboratory")],
               "code": code, "effectiveDateTime": effective, "issued": generated_at,
               "specimen": {"reference": specimen}, "device": {"reference": device},
               "method": {"text": method}, **value}
        if s["operator"]:
            obs["performer"] = [{"display": s["operator"]}]
        if components:
            obs["component"] = components
        if note:
            obs["note"] = [{"text": note}]
        observations.append({"fullUrl": ref(f"observation:{name}"), "resource": obs})

    estimates = estimates_by_class(s)
    for c in s["classes"]:
        key = c.lower()
        observation(f"count-{key}", _coding(LOCAL, f"count-{key}", f"{c} detected, all counted "
                                            "fields"),
                    {"valueQuantity": _quantity(s["totals"].get(c, 0), CELLS, 0)},
                    _component("fields", "fields counted", s["fields_counted"],
                               {"unit": "fields", "system": UCUM, "code": "{fields}"}, 0))
        est = estimates.get(c)
        per_field = (est or {}).get("per_field", s["mean_per_field"].get(c))
        if per_field is not None:
            observation(f"per-field-{key}", _coding(LOCAL, f"per-field-{key}",
                                                    f"{c} per field (mean)"),
                        {"valueQuantity": _quantity(per_field, PER_FIELD, 3)},
                        _interval((est or {}).get("per_field_low"),
                                  (est or {}).get("per_field_high"), PER_FIELD, 3))
        if est and est.get("per_ul") is not None and c in ESTIMATE_CODES:
            code, display = ESTIMATE_CODES[c]
            observation(f"estimate-{key}", _coding(LOINC, code, display),
                        {"valueQuantity": _quantity(est["per_ul"], PER_UL, 0)},
                        _interval(est.get("per_ul_low"), est.get("per_ul_high"), PER_UL, 0),
                        note=f"Estimate: mean cells per field x field factor "
                        f"{est.get('field_factor')}"
                        + (f" ({est['field_factor_source']})" if est.get("field_factor_source")
                           else "") + "; the interval carries counting error only.")

    diff = s.get("differential")
    classes = white_classes(s)
    if diff and classes:
        model_counts = {c: int(diff["counts"].get(c, 0)) for c in classes}
        by_review = reviewed and bool(review.get("reviewed_counts"))
        counts = ({c: int(review["reviewed_counts"].get(c, 0)) for c in classes}
                  if by_review else model_counts)
        model = {label: value for label, _, value, _, _ in differential_values(model_counts)}
        for label, k, value, low, high in differential_values(counts):
            code, display = (ERYTHROBLAST_CODE if label == ERYTHROBLAST else
                             DIFFERENTIAL_CODES.get(label, (f"differential-{label}",
                                                            f"{label}/100 leukocytes")))
            system = LOINC if label == ERYTHROBLAST or label in DIFFERENTIAL_CODES else LOCAL
            unit = PER_100_WBC if label == ERYTHROBLAST else PERCENT
            components = (_component("cells", "cells of this class", k, CELLS, 0)
                          + _interval(low, high, unit))
            if by_review:
                components += _component("model-value", "value before review (model)",
                                         model.get(label), unit)
            observation(f"differential-{label}", _coding(system, code, display),
                        {"valueQuantity": _quantity(value, unit)}, components,
                        METHOD_REVIEWED if by_review else METHOD)
        observation("white-cells-classified", _coding(LOCAL, "white-cells-classified",
                                                      "White cells classified"),
                    {"valueQuantity": _quantity(sum(counts.values()), CELLS, 0)},
                    _component("flagged", "scored below 0.6 (to review)", diff["review"], CELLS,
                               0))

    call = s.get("all_call")
    if call:
        observation("all-call", _coding(LOCAL, "all-subtype-call",
                                        "ALL subtype, session call (screening aid)"),
                    {"valueCodeableConcept": {"text": str(call.get("call"))}},
                    _component("probability", f"{call.get('aggregation')} probability",
                               call.get("probability"), {"unit": "1", "system": UCUM,
                                                         "code": "1"}, 3)
                    + _component("field-agreement", "share of fields agreeing",
                                 call.get("field_agreement"), {"unit": "1", "system": UCUM,
                                                               "code": "1"}, 3),
                    note=call.get("wording"))

    conclusion = _conclusion(s)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "status": report_status,
        "identifier": [{"system": "urn:ietf:rfc:3986",
                        "value": f"urn:uuid:{uuid.UUID(hex=s['session_id'])}"}],
        "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "HM",
                             "Hematology")],
        "code": _coding(LOINC, *REPORT_CODE),
        "effectivePeriod": {"start": s["started_at"], **({"end": s["ended_at"]}
                                                         if s["ended_at"] else {})},
        "issued": generated_at, "specimen": [{"reference": specimen}],
        "result": [{"reference": o["fullUrl"]} for o in observations],
        "conclusion": conclusion}
    if s["operator"]:
        report["performer"] = [{"display": s["operator"]}]
    if reviewed and review.get("reviewers"):
        report["resultsInterpreter"] = [{"display": r} for r in review["reviewers"]]
    if pdf is not None:
        report["presentedForm"] = [{"contentType": "application/pdf", "language": "en",
                                    "data": base64.b64encode(pdf).decode("ascii"),
                                    "title": f"hemascope report {s['sample_id']}",
                                    "creation": generated_at}]
    entries = [{"fullUrl": ref("report"), "resource": report}, *observations,
               {"fullUrl": specimen, "resource": _specimen(s)},
               {"fullUrl": device, "resource": _device(s)}]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": generated_at,
            "identifier": {"system": "urn:ietf:rfc:3986", "value": ref("bundle")},
            "entry": entries}


def _conclusion(s: dict[str, Any]) -> str:
    lines = []
    if s["status"] == SessionStatus.INTERRUPTED:
        lines.append(f"Session interrupted: figures cover the {s['fields_counted']} fields "
                     "counted before the stop.")
    review = s.get("review")
    if review:
        agreement = review.get("agreement")
        lines.append(f"Reviewed: {review.get('reviewed_cells')} cells checked, "
                     f"{review.get('changed')} relabelled"
                     + ("" if agreement is None else f", agreement {100 * agreement:.1f} %")
                     + ".")
    else:
        lines.append("Not reviewed: machine result.")
    if not s["totals"].get(WBC):
        lines.append("No white cells found: no differential.")
    diff = s.get("differential")
    if diff and not diff["reliable"]:
        lines.append("Differential unreliable for this smear (many cells scored below 0.6).")
    lines += [f"Flag: {f.get('text') or f.get('message') or f.get('code')}"
              for f in s.get("flags") or []]
    if s.get("all_call"):
        lines.append(str(s["all_call"].get("wording")))
    lines.append("Screening aid from automated image analysis, not a diagnosis.")
    return " ".join(lines)


def _specimen(s: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Specimen", "status": "available",
            "identifier": [{"type": {"text": "Sample / slide id"}, "value": s["sample_id"]}],
            "type": {"coding": [{"system": SNOMED, "code": "119297000",
                                 "display": "Blood specimen"}],
                     "text": "Stained peripheral blood smear"},
            "note": [{"text": f"Imaged by hemascope from {s['source']}"}]}


def _device(s: dict[str, Any]) -> dict[str, Any]:
    versions = [{"type": {"text": "hemascope software"}, "value": s["hemascope_version"]},
                {"type": {"text": f"detector {s['model']['file']} sha256"},
                 "value": s["model"]["sha256"]}]
    notes = []
    for m in s["classifiers"]:
        versions.append({"type": {"text": f"{m['role']} classifier {m['file']} sha256"},
                         "value": m["sha256"]})
        cal = m.get("calibration")
        if cal:
            notes.append({"text": f"{m['role']} classifier calibrated for this site on "
                          f"{cal.get('reviewed_cells')} reviewed cells (cross-validated agreement "
                          f"{cal.get('cross_validated_accuracy')}), base {cal.get('base_file')} "
                          f"sha256 {cal.get('base_sha256')}"})
    device = {"resourceType": "Device",
              "deviceName": [{"name": s["profile"], "type": "user-friendly-name"},
                             {"name": "hemascope", "type": "model-name"}],
              "version": versions}
    if notes:
        device["note"] = notes
    device["property"] = [{"type": {"text": "report generator"},
                           "valueCode": [{"text": f"hemascope {__version__}"}]}]
    return device


def validate(bundle: dict[str, Any]) -> bool:
    """Check the bundle's structure, cardinalities and types with `fhir.resources` (its R4B
    models: Bundle, DiagnosticReport, Observation, Specimen and Device are as in R4); False
    when the `report` extra is not installed. A bundle that fails is a bug of this module."""
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        return False
    try:
        Bundle.model_validate(bundle)
    except ValueError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise HemascopeError(f"the FHIR bundle failed validation ({first[:300]})",
                             "this is a bug in hemascope: report it with the session id; "
                             "nothing was written") from None
    return True
