"""Session summaries: what a session counted, with which model, from the store alone; and what
it means under the session's protocol (`edge.clinical`): why it stopped, estimates with their
intervals, flags, and the ALL subtype call."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any

from edge.clinical.all_call import SESSION_AGGREGATION, all_call, describe
from edge.clinical.differential import Differential
from edge.clinical.differential import differential as clinical_differential
from edge.clinical.estimates import Estimate, estimate, ratio_field_factor
from edge.clinical.flags import evaluate_flags
from edge.clinical.stop_rule import FieldResult, StopRule
from edge.config import ProtocolConfig
from edge.core.labels import NOT_WHITE_CELLS, PLATELETS, RBC, WBC, FieldStatus
from edge.core.records import StainCheck, StoredField
from edge.report.review import review_summary
from edge.storage.store import TIMED_STEPS, Store

REVIEW_BELOW = 0.6  # a differential class scored below this is flagged for review
UNRELIABLE_SHARE = 0.2  # flagged share above which the differential is called unreliable
ESTIMATE_NOTE = ("estimates from cells per field, not analyser counts: the 95 % interval "
                 "carries counting error only (smear unevenness and the factor add to it)")


def white_differential(cells: list[tuple[str, float]], classes: list[str],
                       max_width: float) -> Differential | None:
    """The clinical differential of the classified white cells over every white-cell class of
    the model (zeros included), or None when none was classified."""
    counts = Counter(label for label, _ in cells)
    white = {c: counts.get(c, 0) for c in classes if c not in NOT_WHITE_CELLS}
    return clinical_differential(white, max_width=max_width) if sum(white.values()) else None


def differential(cells: list[tuple[str, float]],
                 clinical: Differential | None) -> dict[str, Any] | None:
    """Counts and % per class with a 95 % interval for every white-cell class of the model
    (`edge.clinical`: exact Clopper-Pearson for small counts, Wilson otherwise; a class seen
    0 times still has one), and the cells to review: the classifier unsure, or calling a
    detected white cell a platelet (the two models disagree: often an unfamiliar stain)."""
    if not cells:
        return None
    counts = dict(sorted(Counter(label for label, _ in cells).items()))
    review = sum(score < REVIEW_BELOW or label in NOT_WHITE_CELLS for label, score in cells)
    shares = clinical.to_dict() if clinical is not None else None
    return {"classified": len(cells), "counts": counts,
            "percent": {k: round(100 * n / len(cells), 1) for k, n in counts.items()},
            "review": review, "reliable": review <= UNRELIABLE_SHARE * len(cells),
            "interval_95": {k: [v["low"], v["high"]] for k, v in shares["classes"].items()}
            if shares else None,
            "insufficient": shares["insufficient"] if shares else True}


def stain(check: StainCheck | None) -> dict[str, Any] | None:
    """How unlike the training smears the session's stain was (`edge.pipeline.stain_check`)."""
    if check is None:
        return None
    return {"cells": check.cells, "distance": check.distance,
            "reference_distance": check.reference_distance, "unfamiliar": check.unfamiliar}


def protocol(config: ProtocolConfig, fields: list[StoredField], white_per_field: Counter[int],
             status: str) -> dict[str, Any]:
    """The session's protocol and why it stopped: its stored fields replayed, in order,
    through the stop rule `hemascope run` applied (rejected and unreadable fields never
    count); a session that reached no target stopped because the source ended, or was
    interrupted (operator stop, signal, failing camera)."""
    rule = StopRule(config.stop_protocol())
    for f in fields:
        rule.add(FieldResult(f.status is FieldStatus.COUNTED, white_per_field.get(f.idx, 0)))
    p = rule.progress
    ended = {"interrupted": "interrupted", "running": "still running"}.get(status,
                                                                          "source ended")
    return {"mode": str(config.mode), "white_cells_target": config.white_cells,
            "fields_target": config.fields, "max_fields": config.max_fields,
            "max_interval_percent": config.max_interval_percent,
            "white_cells": p.white_cells, "fields": p.fields, "fields_not_counted": p.rejected,
            "stop": str(p.reason) if p.reason else ended, "progress": p.line()}


def _estimate_dict(e: Estimate, method: str, source: str | None) -> dict[str, Any]:
    def whole(x: float | None) -> int | None:
        return None if x is None else round(x)

    return {"total": e.total, "fields": e.fields, "per_field": round(e.per_field, 3),
            "per_field_low": round(e.per_field_low, 3),
            "per_field_high": round(e.per_field_high, 3),
            "per_ul": whole(e.per_ul), "per_ul_low": whole(e.per_ul_low),
            "per_ul_high": whole(e.per_ul_high),
            "field_factor": None if e.field_factor is None else round(e.field_factor, 3),
            "method": method, "field_factor_source": source}


def estimates(config: ProtocolConfig, totals: dict[str, int], counted: int,
              ) -> tuple[dict[str, Any] | None, dict[str, Estimate]]:
    """WBC/µL and platelets/µL (a calibrated field factor, else the ratio to the red cells
    counted in the same fields x the reference red-cell count) and RBC per field, each with
    its 95 % Poisson interval; and the estimates themselves, for the flags."""
    if counted == 0 or not {WBC, RBC, PLATELETS} <= set(totals):
        return None, {}
    ratio = ratio_field_factor(totals[RBC], counted, config.reference_rbc_per_ul)
    ratio_source = (f"ratio to the {totals[RBC]} red cells counted in the same fields x "
                    f"{config.reference_rbc_per_ul:,.0f} red cells/µL assumed (adult "
                    "reference; too high in anaemia)")
    out: dict[str, Any] = {"note": ESTIMATE_NOTE}
    made: dict[str, Estimate] = {}
    for key, label, factor in (("wbc", WBC, config.wbc_field_factor),
                               ("platelets", PLATELETS, config.platelet_field_factor)):
        if factor is not None:
            method, source = "calibrated field factor", config.field_factor_source
        elif ratio is not None:
            factor, method, source = ratio, "red-cell ratio", ratio_source
        else:
            method, source = "per field only (no red cells to take a ratio to)", None
        made[key] = estimate(totals[label], counted, factor)
        out[key] = _estimate_dict(made[key], method, source)
    out["rbc"] = _estimate_dict(estimate(totals[RBC], counted), "per field", None)
    return out, made


def all_subtype_call(subtypes: list[dict[str, float]]) -> dict[str, Any] | None:
    """The session's ALL subtype call from its fields' probabilities (the aggregation measured
    to be calibrated, docs/clinical.md), worded as a screening aid, never a diagnosis."""
    if not subtypes:
        return None
    call = all_call(subtypes, list(subtypes[0]), SESSION_AGGREGATION)
    return {"call": call.label, "probability": round(call.probability, 4),
            "field_agreement": round(call.agreement, 4), "fields": call.fields,
            "aggregation": call.aggregation, "wording": describe(call)}


def interpretation(store: Store, session_id: str, status: str, config: ProtocolConfig,
                   fields: list[StoredField], totals: dict[str, int],
                   clinical: Differential | None, diff: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """The summary's clinical keys: "protocol" (why the session stopped), "estimates",
    "flags" (code, text, value, threshold, and whether the whole interval is beyond it) and
    "all_call"."""
    counted = [f for f in fields if f.status is FieldStatus.COUNTED]
    white_per_field = Counter(c.field_idx for c in store.classified_cells(session_id)
                              if c.label not in NOT_WHITE_CELLS)
    estimated, made = estimates(config, totals, len(counted))
    flags = evaluate_flags(fields=len(counted), differential=clinical, wbc=made.get("wbc"),
                           platelets=made.get("platelets"),
                           differential_unreliable=diff is not None and not diff["reliable"],
                           thresholds=config.flags.thresholds())
    return {"protocol": protocol(config, fields, white_per_field, status),
            "estimates": estimated,
            "flags": [{"code": f.code, "text": f.message,
                       "value": None if f.value is None else round(f.value, 1),
                       "threshold": f.threshold, "definite": f.definite} for f in flags],
            "all_call": all_subtype_call([f.subtype for f in counted if f.subtype])}


def session_summary(store: Store, session_id: str) -> dict[str, Any]:
    """A JSON-ready summary: session metadata, per-class totals, per-field counts, timings."""
    s = store.session(session_id)
    classes = s.classes
    fields = store.fields(s.id)
    per_field = store.field_counts(s.id)
    totals = store.totals(s.id)
    counted = [f for f in fields if f.status is FieldStatus.COUNTED]
    subtypes = [f.subtype for f in counted if f.subtype]
    wbc_classes = next((m.get("classes", []) for m in s.classifiers if m.get("role") == "wbc"),
                       [])
    config = ProtocolConfig.model_validate(s.profile.get("protocol", {}))  # as it ran
    cells = store.differential(s.id)
    wbc_classes = next((m.get("classes", []) for m in s.classifiers if m.get("role") == "wbc"),
                       [])
    clinical = white_differential(cells, wbc_classes, config.max_interval_percent / 100)
    diff = differential(cells, clinical)
    session_totals = {c: int(totals.get(c, 0)) for c in classes}

    def median(key: str) -> float | None:
        values = [f.timings_ms[key] for f in counted if f.timings_ms[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "session_id": s.id,
        "sample_id": s.sample_id,
        "operator": s.operator,
        "profile": s.profile_name,
        "source": s.source,
        "status": s.status,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "hemascope_version": s.hemascope_version,
        "model": {"file": s.model_file, "sha256": s.model_sha256,
                  **({"digest": s.model_digest} if s.model_digest else {})},
        "classes": classes,
        "classifiers": s.classifiers,
        "differential": diff,
        "stain": stain(store.stain_check(s.id)),
        "review": review_summary(store, s, wbc_classes, lambda reviewed: differential(
            reviewed, white_differential(reviewed, wbc_classes,
                                         config.max_interval_percent / 100))),
        "all_subtype": {
            "fields": len(subtypes),
            "mean_probability": {k: round(statistics.fmean(p[k] for p in subtypes), 4)
                                 for k in subtypes[0]},
        } if subtypes else None,
        "fields_counted": len(counted),
        "fields_rejected": sum(f.status is FieldStatus.REJECTED for f in fields),
        "fields_skipped": sum(f.status is FieldStatus.SKIPPED for f in fields),
        "totals": session_totals,
        "mean_per_field": {c: round(totals.get(c, 0) / len(counted), 3) if counted else None
                           for c in classes},
        **interpretation(store, s.id, s.status, config, fields, session_totals, clinical, diff),
        "telemetry": store.telemetry(s.id),
        "median_ms": {k: median(k) for k in TIMED_STEPS},
        "fields": [
            {"idx": f.idx, "origin": f.origin, "status": f.status, "reason": f.reason,
             "counts": per_field.get(f.idx), "qc": f.qc, "all_subtype": f.subtype,
             "evidence": f.evidence_path}
            for f in fields
        ],
    }


def summary_json(summary: dict[str, Any]) -> bytes:
    """The JSON report's bytes."""
    return (json.dumps(summary, indent=2) + "\n").encode()

