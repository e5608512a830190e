"""The HTML report rendered from real sessions: every figure of the summary, nothing to fetch,
markup from the session shown as text, and the parts other steps add (estimates, flags, ALL
call, protocol, review) rendered when present and absent without a trace."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest

from edge.core.labels import SessionStatus
from edge.core.records import ClassifiedCell
from edge.report import gallery as gallery_module
from edge.report.gallery import collect
from edge.report.html import render_html
from tests.edge.report.conftest import SAMPLE

DASH = "\N{EN DASH}"  # between the ends of an interval


class Page(HTMLParser):
    """Ids, tag counts, attributes that load something, and the text of a page."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: dict[str, int] = {}
        self.loads: list[str] = []
        self.classes: list[str] = []
        self.chunks: list[str] = []
        self.feed(markup)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name == "class":
                self.classes.append(value)
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.loads.append(value)

    def handle_data(self, data):
        self.chunks.append(data)


def _render(sessions, summary=None, session=None):
    store = sessions.store()
    try:
        s = summary or sessions.summary(session or sessions.slide)
        return render_html(s, collect(store, s), "2026-12-07T10:00:00+00:00"), s
    finally:
        store.close()


def test_the_report_of_a_real_session_shows_its_figures_and_loads_nothing(sessions):
    markup, s = _render(sessions)
    page = Page(markup)
    assert {"meta", "counts", "differential", "all", "review", "qc", "evidence", "provenance",
            "telemetry", "differential-chart"} <= page.ids
    assert page.loads and all(u.startswith("data:image/jpeg;base64,") for u in page.loads)
    assert not re.search(r"(?:url\(|@import|<script|<link)", markup)
    assert SAMPLE in page.text and "<b>42</b>" not in markup  # shown as text, not markup
    for c in ("WBC", "RBC", "Platelets"):
        assert re.search(rf"{c} {s['totals'][c]} {s['mean_per_field'][c]:.2f}", page.text)
    diff = s["differential"]
    top = max(diff["counts"], key=diff["counts"].get)
    low, high = diff["interval_95"][top]
    interval = f"{low:.1f}{DASH}{high:.1f}"
    assert f"{top} {diff['counts'][top]} {diff['percent'][top]:.1f} {interval}" in page.text
    for m in [s["model"], *s["classifiers"]]:
        assert m["sha256"] in page.text
    assert "Not reviewed" in page.text
    reasons = [f["reason"] for f in s["fields"] if f["status"] != "counted"]
    assert len(reasons) == 3 and all(r in page.text for r in reasons)
    assert page.classes.count("qc") == 2  # the duplicate and the blank frame; unreadable: none
    assert page.classes.count("field") == s["fields_counted"] == 6
    classified = diff["classified"]
    assert sum(c.startswith("cell") for c in page.classes) == classified
    assert page.classes.count("cell flagged") == diff["review"]
    assert s["telemetry"][0]["at"] in page.text and "mem_total_mb" in page.text
    # the session's protocol keys render when the summary has them, and only then
    for key, section in (("flags", "flags"), ("protocol", "protocol"),
                         ("all_call", "all-call-wording"), ("review", "review-table")):
        assert (section in page.ids) == bool(s.get(key)), key
    for flag in s["flags"]:
        assert flag["text"] in page.text


def test_the_gallery_shows_the_fields_with_most_white_cells_and_caps_each_class(
        sessions, monkeypatch):
    monkeypatch.setattr(gallery_module, "MAX_FIELDS", 2)
    monkeypatch.setattr(gallery_module, "MAX_CELLS_PER_CLASS", 1)
    s = sessions.summary(sessions.slide)
    store = sessions.store()
    g = collect(store, s)
    store.close()
    counted = [f for f in s["fields"] if f["status"] == "counted"]
    best = sorted(counted, key=lambda f: (-f["counts"]["WBC"], f["idx"]))[:2]
    assert [t.caption.split(" · ")[0] for t in g.fields] == \
        [f"field {f['idx']}" for f in sorted(best, key=lambda f: f["idx"])]
    assert all(len(v) == 1 for v in g.cells.values())
    assert sum(g.cells_total.values()) == s["differential"]["classified"]
    assert g.missing == 0


@pytest.mark.parametrize("flagged, confident, shown", [
    (10, 20, (8, 8)), (10, 3, (10, 3)), (20, 3, (13, 3)), (0, 30, (0, 16)), (2, 2, (2, 2))])
def test_a_class_gallery_keeps_room_for_confident_cells(flagged, confident, shown):
    cells = [ClassifiedCell(i, 0, "monocyte", 0.3, None) for i in range(flagged)]
    cells += [ClassifiedCell(100 + i, 0, "monocyte", 0.9, None) for i in range(confident)]
    sample = gallery_module._sample(cells)
    assert (sum(c.label_score < 0.6 for c in sample), sum(c.label_score >= 0.6 for c in sample)
            ) == shown
    assert [c.field_idx for c in sample] == sorted(c.field_idx for c in sample)  # flagged first


def test_a_missing_evidence_file_is_said_not_hidden(sessions, tmp_path):
    s = copy.deepcopy(sessions.summary(sessions.slide))
    s["fields"][0]["evidence"] = "evidence/none/00000.jpg"
    markup, _ = _render(sessions, s)
    assert "1 evidence files named in the database are missing" in Page(markup).text


def _with_other_parts(s: dict) -> dict:
    """The real summary with the parts the protocol, estimate, flag, ALL and review steps add
    (their agreed shape), including markup that must stay text."""
    s = copy.deepcopy(s)
    wbc = s["totals"]["WBC"]
    s["estimates"] = {
        "wbc": {"total": wbc, "fields": 6, "per_field": wbc / 6, "per_field_low": 1.1,
                "per_field_high": 3.3, "field_factor": 3000.0, "per_ul": 6543.0,
                "per_ul_low": 3300.0, "per_ul_high": 9900.0,
                "field_factor_source": "calibrated on 12 smears, 2026-11"},
        "platelets": {"total": 9, "fields": 6, "per_field": 1.5, "per_field_low": 0.7,
                      "per_field_high": 2.8, "field_factor": 100000.0, "per_ul": 150000.0,
                      "per_ul_low": 70000.0, "per_ul_high": 280000.0},
        "rbc": {"total": 100, "fields": 6, "per_field": 16.7, "per_field_low": 13.6,
                "per_field_high": 20.3, "field_factor": None, "per_ul": None,
                "per_ul_low": None, "per_ul_high": None}}
    s["flags"] = [{"code": "eosinophilia", "text": "eosinophils 7.7 % above 6 % <i>x</i>",
                   "value": 7.7, "threshold": 6.0},
                  {"code": "too-few-fields", "text": "only 6 accepted fields", "value": 6,
                   "threshold": 10}]
    s["all_call"] = {"call": "Benign", "probability": 0.91, "field_agreement": 0.83,
                     "fields": 6, "aggregation": "mean",
                     "wording": "The field scores are consistent with a benign smear."}
    s["protocol"] = {"mode": "differential", "white_cells": 200, "stop_reason": "field limit"}
    labels = list(s["differential"]["counts"])
    model = dict(s["differential"]["counts"])
    reviewed = dict(model)
    reviewed[labels[0]] -= 1
    reviewed["lymphocyte"] = reviewed.get("lymphocyte", 0) + 1
    s["review"] = {"reviewed_cells": sum(model.values()), "changed": 1, "agreement": 0.9231,
                   "reviewers": ["amina"], "last_reviewed_at": "2026-12-07T09:00:00+00:00",
                   "model_counts": model, "reviewed_counts": reviewed,
                   "reviewed_differential": None,
                   "rejected_fields": [{"idx": 3, "reason": "stain <artefact>",
                                        "reviewer": "amina", "at": "2026-12-07T09:01:00+00:00"}]}
    return s


def test_parts_added_by_other_steps_render_when_present(sessions):
    s = _with_other_parts(sessions.summary(sessions.slide))
    markup, _ = _render(sessions, s)
    page = Page(markup)
    assert {"flags", "protocol", "all-call-wording", "review-table"} <= page.ids
    assert (f"WBC {s['totals']['WBC']} {s['totals']['WBC'] / 6:.2f} 1.10{DASH}3.30 6,543 "
            f"3,300{DASH}9,900") in page.text
    assert (f"Platelets {s['totals']['Platelets']} 1.50 0.70{DASH}2.80 150,000 "
            f"70,000{DASH}280,000") in page.text
    assert f"RBC {s['totals']['RBC']} 16.70 13.60{DASH}20.30 - -" in page.text
    assert "field factor 3000.0 (calibrated on 12 smears, 2026-11)" in page.text
    assert "eosinophils 7.7 % above 6 % <i>x</i>" in page.text and "<i>x</i>" not in markup
    assert "only 6 accepted fields" in page.text
    assert "The field scores are consistent with a benign smear." in page.text
    assert "Benign 0.91 83 % 6 mean" in page.text
    assert "differential" in page.text and "field limit" in page.text
    assert "Reviewed: " in page.text and "by amina" in page.text and "92.3 %" in page.text
    assert "reviewed cells" in page.text  # the differential table gains the reviewed columns
    assert "Reviewed differential, % with 95 % interval" in page.text
    assert "stain <artefact>" in page.text and "<artefact>" not in markup


def test_flags_present_but_empty_say_so(sessions):
    s = copy.deepcopy(sessions.summary(sessions.slide))
    s["flags"] = []
    assert "No flags raised." in Page(_render(sessions, s)[0]).text


def test_an_interrupted_session_is_marked(sessions):
    s = copy.deepcopy(sessions.summary(sessions.slide))
    s["status"] = SessionStatus.INTERRUPTED
    text = Page(_render(sessions, s)[0]).text
    assert "Interrupted: this session stopped early" in text
    assert f"only the {s['fields_counted']} fields counted before the stop" in text


@pytest.mark.parametrize("which", ["no_white_cells"])
def test_a_session_without_white_cells_says_there_is_no_differential(sessions, which):
    markup, s = _render(sessions, session=getattr(sessions, which))
    page = Page(markup)
    assert s["totals"]["WBC"] == 0 and s["differential"] is None
    assert "No white cells were found in the 4 counted fields" in page.text
    assert "None: no white cells were found." in page.text
    assert "differential-chart" not in page.ids
