"""The HTML report of a session: one self-contained file (styles inline, pictures as data:
URIs, no fonts, scripts or links to fetch), readable on screen and on paper. Standard library
only: every value from the session passes through `html.escape`."""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from edge import __version__
from edge.core.labels import WBC, FieldStatus, SessionStatus
from edge.report.figures import (
    Share,
    estimates_by_class,
    model_shares,
    reviewed_shares,
    white_classes,
)
from edge.report.gallery import Gallery, Thumb

SCREENING = ("A screening aid from automated image analysis, not a diagnosis: confirm abnormal "
             "results by smear review (and immunophenotyping for leukaemia).")

_CSS = """
:root { --ink: #1d232a; --muted: #5b6572; --line: #d5dae0; --accent: #2f5d8a;
        --warn-bg: #fff4e0; --warn: #8a5300; --bad-bg: #fde8e8; --bad: #9b1c1c; --ok: #1f6f43; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1080px; padding: 16px 24px;
       font-size: 14px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 22px 0 8px; padding-bottom: 3px;
     border-bottom: 2px solid var(--accent); color: var(--accent); }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left;
         vertical-align: top; }
th { background: #eef2f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { display: grid; grid-template-columns: max-content 1fr max-content 1fr;
        gap: 2px 14px; margin: 8px 0; }
.meta dt { color: var(--muted); } .meta dd { margin: 0; font-weight: bold; }
.mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px;
        word-break: break-all; }
.muted, .caption { color: var(--muted); } .caption { font-size: 12px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: bold;
         border: 1px solid; }
.badge.reviewed { color: var(--ok); } .badge.unreviewed { color: var(--warn); }
.alert { padding: 8px 12px; margin: 8px 0; border-left: 5px solid var(--warn);
         background: var(--warn-bg); color: var(--warn); }
.alert.bad { border-color: var(--bad); background: var(--bad-bg); color: var(--bad); }
.wording { font-size: 15px; font-weight: bold; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; break-inside: avoid; }
figure img { display: block; border: 1px solid var(--line); }
figure.flagged img { border: 3px solid var(--bad); }
figcaption { font-size: 11px; color: var(--muted); max-width: 240px; }
.field img { width: 240px; height: auto; } .cell img { width: 72px; height: 72px; }
.qc img { width: 120px; height: auto; }
svg text { font-family: inherit; font-size: 12px; fill: var(--ink); }
footer { margin-top: 24px; border-top: 1px solid var(--line); padding-top: 6px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  h2 { break-after: avoid; } tr, figure, .alert, svg { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .field img { width: 170px; } .cell img { width: 56px; height: 56px; }
}
"""


def e(value: Any) -> str:
    """A value as escaped text ("-" for None)."""
    return "-" if value is None else html.escape(str(value))


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _interval(low: float | None, high: float | None, digits: int = 1) -> str:
    return "-" if low is None or high is None else f"{low:,.{digits}f}&ndash;{high:,.{digits}f}"


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int] = frozenset(),
           attrs: str = "") -> str:
    """A table from already escaped cells; columns in `numeric` are right-aligned."""
    def cells(tag: str, values: Iterable[str]) -> str:
        return "".join(f"<{tag}{' class=num' if i in numeric else ''}>{v}</{tag}>"
                       for i, v in enumerate(values))
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table{attrs}><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{e(title)}</h2>{body}</section>'


def _figure(t: Thumb, kind: str) -> str:
    flagged = " flagged" if t.flagged else ""
    return (f'<figure class="{kind}{flagged}"><img src="{t.uri}" alt="{e(t.caption)}">'
            f"<figcaption>{e(t.caption)}</figcaption></figure>")


def _header(s: dict[str, Any]) -> str:
    review = s.get("review")
    badge = (f'<span class="badge reviewed">Reviewed: {e(review.get("reviewed_cells"))} cells '
             f'by {e(", ".join(review.get("reviewers") or []) or "unnamed reviewer")}</span>'
             if review else '<span class="badge unreviewed">Not reviewed: machine result, '
             "no person has checked the cells</span>")
    meta = [("Sample", s["sample_id"]), ("Session", s["session_id"]),
            ("Device", s["profile"]), ("Operator", s["operator"] or "not recorded"),
            ("Started", s["started_at"]), ("Ended", s["ended_at"] or "still running"),
            ("Status", s["status"]), ("Source", s["source"])]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in meta)
    return (f"<header><h1>Blood smear report · sample {e(s['sample_id'])}</h1>"
            f'<dl class="meta" id="meta">{dl}</dl>{badge}</header>')


def _alerts(s: dict[str, Any]) -> str:
    out = []
    if s["status"] == SessionStatus.INTERRUPTED:
        out.append(("bad", f"Interrupted: this session stopped early (at {e(s['ended_at'])}). "
                    f"The figures cover only the {s['fields_counted']} fields counted before the "
                    "stop."))
    if s["source"].startswith("synthetic"):
        out.append(("", "Demonstration: these fields are synthetic drawings, not a blood smear; "
                    "the figures mean nothing clinically."))
    diff = s.get("differential")
    if not s["totals"].get(WBC):
        out.append(("bad", f"No white cells were found in the {s['fields_counted']} counted "
                    "fields: there is no differential. Check the smear, stain and focus."))
    elif diff and not diff["reliable"]:
        out.append(("bad", f"Differential unreliable for this smear: {diff['review']} of "
                    f"{diff['classified']} white cells were scored below 0.6 (often a stain or "
                    "camera unlike the training smears). Review the cells before using it."))
    if diff and diff["classified"] < 100:
        out.append(("", f"Only {diff['classified']} white cells were classified (fewer than the "
                    "customary 100): the percentages are imprecise; see their intervals."))
    return "".join(f'<div class="alert {kind}">{text}</div>' for kind, text in out)


def _counts(s: dict[str, Any]) -> str:
    estimates = estimates_by_class(s)
    rows = []
    for c in s["classes"]:
        est = estimates.get(c, {})
        per_field = est.get("per_field", s["mean_per_field"].get(c))
        rows.append([e(c), e(s["totals"].get(c, 0)), _num(per_field, 2),
                     _interval(est.get("per_field_low"), est.get("per_field_high"), 2),
                     _num(est.get("per_ul"), 0),
                     _interval(est.get("per_ul_low"), est.get("per_ul_high"), 0)])
    table = _table(["class", "cells counted", "per field", "95 % CI", "per µL (estimate)",
                    "95 % CI"], rows, {1, 2, 3, 4, 5}, ' id="counts-table"')
    factors = [f"{e(c)} field factor {e(est['field_factor'])}"
               + (f" ({e(est['field_factor_source'])})" if est.get("field_factor_source") else "")
               for c, est in estimates.items() if est.get("field_factor")]
    notes = [f"{s['fields_counted']} fields counted, {s['fields_rejected']} rejected by quality "
             f"control, {s['fields_skipped']} unreadable."]
    if estimates:
        notes.append("Per-µL figures are estimates from cells per field times a calibrated field "
                     "factor; their interval carries counting error only."
                     + (" " + "; ".join(factors) + "." if factors else ""))
    else:
        notes.append("No estimates per µL: this session's summary has none.")
    return _section("counts", "Counts and estimates",
                    table + "".join(f'<p class="caption">{n}</p>' for n in notes))


def _bar_chart(shares: list[Share], title: str) -> str:
    """Horizontal bars of the percentages with their 95 % intervals as whiskers."""
    row, left, width = 24, 110, 460
    height = row * len(shares) + 30
    parts = [f'<svg id="differential-chart" role="img" aria-label="{e(title)}" '
             f'width="{left + width + 90}" height="{height}" '
             f'viewBox="0 0 {left + width + 90} {height}" xmlns="http://www.w3.org/2000/svg">']
    for tick in range(0, 101, 20):
        x = left + width * tick / 100
        parts.append(f'<line x1="{x}" y1="4" x2="{x}" y2="{height - 22}" stroke="#d5dae0"/>'
                     f'<text x="{x}" y="{height - 8}" text-anchor="middle">{tick} %</text>')
    for i, sh in enumerate(shares):
        y = 6 + i * row
        pct = sh.percent or 0.0
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{e(sh.label)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{width * pct / 100:.1f}" height="14" '
                     f'fill="#2f5d8a"/>')
        if sh.low is not None and sh.high is not None:
            x1, x2 = left + width * sh.low / 100, left + width * sh.high / 100
            parts.append(f'<line x1="{x1:.1f}" y1="{y + 10}" x2="{x2:.1f}" y2="{y + 10}" '
                         f'stroke="#1d232a" stroke-width="1.5"/>'
                         f'<line x1="{x1:.1f}" y1="{y + 5}" x2="{x1:.1f}" y2="{y + 15}" '
                         f'stroke="#1d232a"/><line x1="{x2:.1f}" y1="{y + 5}" x2="{x2:.1f}" '
                         f'y2="{y + 15}" stroke="#1d232a"/>')
        parts.append(f'<text x="{left + width + 8}" y="{y + 14}">{_num(sh.percent)} %</text>')
    parts.append("</svg>")
    return "".join(parts)


def _differential(s: dict[str, Any]) -> str:
    diff = s.get("differential")
    if not diff:
        why = ("no white cells were found" if white_classes(s)
               else "the white-cell differential was not run in this session")
        return _section("differential", "White-cell differential", f"<p>None: {why}.</p>")
    model, reviewed = model_shares(s), reviewed_shares(s)
    by_label = {r.label: r for r in reviewed}
    head = ["class", "cells", "%", "95 % CI"]
    if reviewed:
        head = ["class", "model cells", "model %", "model 95 % CI", "reviewed cells",
                "reviewed %", "reviewed 95 % CI"]
    rows = []
    for m in model:
        row = [e(m.label), e(m.count), _num(m.percent), _interval(m.low, m.high)]
        if reviewed:
            r = by_label.get(m.label, Share(m.label, 0, 0.0, None, None))
            row += [e(r.count), _num(r.percent), _interval(r.low, r.high)]
        rows.append(row)
    table = _table(head, rows, set(range(1, len(head))), ' id="differential-table"')
    shown = reviewed or model
    chart_title = ("Reviewed differential" if reviewed else "Differential (model)") + \
        ", % with 95 % interval"
    caption = (f"{diff['classified']} white cells classified by the model; {diff['review']} "
               f"scored below 0.6 (to review). Intervals: exact Clopper-Pearson when a class or "
               f"its complement has fewer than 10 cells, Wilson score otherwise.")
    if diff.get("insufficient"):
        caption += " At least one interval is wider than the profile allows: count more cells."
    if diff["counts"].get("erythroblast"):
        caption += (" Erythroblasts (nucleated red cells) are counted among the classified "
                    "cells here; the FHIR report gives them per 100 leukocytes.")
    return _section("differential", "White-cell differential",
                    table + f"<h3>{e(chart_title)}</h3>" + _bar_chart(shown, chart_title)
                    + f'<p class="caption">{caption}</p>')


def _flags(s: dict[str, Any]) -> str:
    flags = s.get("flags")
    if flags is None:
        return ""
    if not flags:
        return _section("flags", "Flags", "<p>No flags raised.</p>")
    rows = [[e(f.get("code")), e(f.get("text") or f.get("message")), e(f.get("value")),
             e(f.get("threshold"))] for f in flags]
    return _section("flags", "Flags", _table(["flag", "finding", "value", "threshold"], rows,
                                             {2, 3}, ' id="flags-table"'))


def _all_call(s: dict[str, Any]) -> str:
    call, subtype = s.get("all_call"), s.get("all_subtype")
    if not call and not subtype:
        return ""
    body = ""
    if call:
        agreement = call.get("field_agreement")
        body += (f'<p class="wording" id="all-call-wording">{e(call.get("wording"))}</p>'
                 + _table(["call", "probability", "field agreement", "fields", "aggregation"],
                          [[e(call.get("call")), _num(call.get("probability"), 2),
                            "-" if agreement is None else f"{100 * agreement:.0f} %",
                            e(call.get("fields")), e(call.get("aggregation"))]], {1, 2, 3}))
    if subtype:
        body += "<h3>Mean probability over fields</h3>" + _table(
            ["class", "mean probability"],
            [[e(k), _num(p, 3)] for k, p in subtype["mean_probability"].items()], {1})
        body += f'<p class="caption">{subtype["fields"]} fields scored.</p>'
    return _section("all", "Acute lymphoblastic leukaemia work-up", body +
                    '<p class="caption">Screening aid, not a diagnosis. Confirm by smear review '
                    "and immunophenotyping.</p>")


def _protocol(s: dict[str, Any]) -> str:
    protocol = s.get("protocol")
    if not protocol:
        return ""
    rows = [[e(k), e(v)] for k, v in protocol.items()] if isinstance(protocol, dict) \
        else [["protocol", e(protocol)]]
    return _section("protocol", "Protocol", _table(["", ""], rows))


def _review(s: dict[str, Any]) -> str:
    review = s.get("review")
    if not review:
        return _section("review", "Review", '<p id="review-status"><strong>Not reviewed.'
                        "</strong> The figures above are the machine's; no person has checked "
                        "the cells on this device.</p>")
    agreement = review.get("agreement")
    lines = [f"<strong>Reviewed</strong>: {e(review.get('reviewed_cells'))} cells checked by "
             f"{e(', '.join(review.get('reviewers') or []) or 'an unnamed reviewer')}, last on "
             f"{e(review.get('last_reviewed_at'))}; {e(review.get('changed'))} relabelled; "
             "agreement with the model "
             + ("-" if agreement is None else f"{100 * agreement:.1f} %") + "."]
    body = f'<p id="review-status">{lines[0]}</p>'
    model, reviewed = review.get("model_counts") or {}, review.get("reviewed_counts") or {}
    labels = sorted(set(model) | set(reviewed), key=lambda k: -reviewed.get(k, 0))
    if labels:
        body += _table(["class", "model", "reviewed"],
                       [[e(k), e(model.get(k, 0)), e(reviewed.get(k, 0))] for k in labels],
                       {1, 2}, ' id="review-table"')
    rejected = review.get("rejected_fields") or []
    if rejected:
        body += "<h3>Fields rejected by the reviewer</h3>" + _table(
            ["field", "reason", "reviewer", "at"],
            [[e(r.get("idx")), e(r.get("reason")), e(r.get("reviewer")), e(r.get("at"))]
             for r in rejected], {0})
    return _section("review", "Review: model and reviewed", body)


def _quality(s: dict[str, Any], gallery: Gallery) -> str:
    bad = [f for f in s["fields"] if f["status"] != FieldStatus.COUNTED]
    if not bad:
        return _section("qc", "Quality control", "<p>Every field passed quality control.</p>")
    rows = []
    for f in bad:
        t = gallery.rejected.get(f["idx"])
        rows.append([e(f["idx"]), e(PurePath(f["origin"]).name), e(f["status"]), e(f["reason"]),
                     _figure(t, "qc") if t else ""])
    return _section("qc", "Quality control: fields not counted",
                    _table(["field", "image", "status", "reason", "evidence"], rows, {0},
                           ' id="qc-table"'))


def _evidence(gallery: Gallery) -> str:
    body = ""
    if gallery.fields:
        body += (f"<h3>Annotated fields ({len(gallery.fields)} of {gallery.fields_total} "
                 "counted, those with the most white cells)</h3><div class=\"gallery\">"
                 + "".join(_figure(t, "field") for t in gallery.fields) + "</div>")
    for label, thumbs in gallery.cells.items():
        body += (f"<h3>{e(label)} ({len(thumbs)} of {gallery.cells_total[label]} cells; red "
                 "frame: scored below 0.6)</h3><div class=\"gallery\">"
                 + "".join(_figure(t, "cell") for t in thumbs) + "</div>")
    if gallery.missing:
        body += (f'<p class="alert">{gallery.missing} evidence files named in the database are '
                 "missing or unreadable.</p>")
    return _section("evidence", "Evidence", body or "<p>No evidence images stored.</p>")


def _provenance(s: dict[str, Any]) -> str:
    rows = [["detector", e(s["model"]["file"]), f'<span class="mono">{e(s["model"]["sha256"])}'
             "</span>", e(", ".join(s["classes"])), "-"]]
    for m in s["classifiers"]:
        cal = m.get("calibration")
        agreement = _num(cal.get("cross_validated_accuracy"), 2) if cal else ""
        calibration = (f"calibrated for this site on {e(cal.get('reviewed_cells'))} reviewed "
                       f"cells (cross-validated agreement {agreement}); base "
                       f"{e(cal.get('base_file'))} sha256 "
                       f'<span class="mono">{e(cal.get("base_sha256"))}</span>, '
                       f"{e(cal.get('created_at'))}" if cal else "not calibrated for this site")
        rows.append([e(m["role"]), e(m["file"]), f'<span class="mono">{e(m["sha256"])}</span>',
                     e(", ".join(m.get("classes", []))), calibration])
    return _section("provenance", "Models and provenance",
                    _table(["role", "file", "sha256", "classes", "site calibration"], rows,
                           attrs=' id="provenance-table"')
                    + f'<p class="caption">hemascope {e(s["hemascope_version"])}, profile '
                    f'{e(s["profile"])}. Every stored field records the sha256 of the model that '
                    "counted it.</p>")


def _telemetry(s: dict[str, Any]) -> str:
    snaps = s.get("telemetry") or []
    body = ""
    if snaps:
        first, last = snaps[0], snaps[-1]
        keys = [k for k in dict.fromkeys([*first, *last]) if k != "at"]
        body += _table(["reading", f"start ({e(first['at'])})", f"end ({e(last['at'])})"],
                       [[e(k), e(first.get(k)), e(last.get(k))] for k in keys],
                       attrs=' id="telemetry-table"')
    timings = {k: v for k, v in (s.get("median_ms") or {}).items() if v is not None}
    if timings:
        body += "<h3>Median time per field</h3>" + _table(
            ["step", "ms"], [[e(k), _num(v, 1)] for k, v in timings.items()], {1})
    return _section("telemetry", "Device telemetry", body or "<p>No telemetry recorded.</p>")


def render_html(summary: dict[str, Any], gallery: Gallery, generated_at: str) -> str:
    """The whole report as one HTML document."""
    s = summary
    parts = [_header(s), _alerts(s), _counts(s), _differential(s), _flags(s), _all_call(s),
             _protocol(s), _review(s), _quality(s, gallery), _evidence(gallery),
             _provenance(s), _telemetry(s)]
    footer = (f'<footer class="caption">Generated {e(generated_at)} by hemascope {e(__version__)} '
              f"from the device database (session {e(s['session_id'])}). {e(SCREENING)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>hemascope report {e(s['sample_id'])} {e(s['session_id'][:12])}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}{footer}</body></html>\n")
