"""The differential: shares, intervals, the insufficient flag, no white cells."""

from __future__ import annotations

import pytest

from edge.clinical.differential import DEFAULT_MAX_WIDTH, differential
from edge.clinical.intervals import proportion_interval


def test_shares_and_intervals_per_class():
    counts = {"neutrophil": 120, "lymphocyte": 60, "monocyte": 14, "eosinophil": 6,
              "basophil": 0}
    d = differential(counts)
    assert d.total == 200
    neut = d.share("neutrophil")
    assert neut.percent == pytest.approx(60.0)
    assert neut.interval == proportion_interval(120, 200)
    assert neut.interval.low < 0.6 < neut.interval.high
    baso = d.share("basophil")
    assert baso.count == 0 and baso.interval.low == 0 and baso.interval.high > 0.01
    assert baso.interval.method == "clopper-pearson"
    assert d.share("blast") is None
    out = d.to_dict()
    assert out["classes"]["neutrophil"]["percent"] == 60.0
    assert out["classes"]["basophil"]["low"] == 0.0 and out["insufficient"] is False


def test_insufficient_when_an_interval_is_wider_than_allowed():
    # 50 of 100: Wilson width 0.192 (fine at 0.20); 25 of 50: width 0.26 (insufficient).
    assert not differential({"a": 50, "b": 50}).insufficient
    small = differential({"a": 25, "b": 25})
    assert small.insufficient and all(c.insufficient for c in small.classes)
    strict = differential({"a": 50, "b": 50}, max_width=0.15)
    assert strict.insufficient
    mixed = differential({"a": 195, "b": 5}, max_width=0.06)
    assert [c.insufficient for c in mixed.classes] == [False, False]
    # Per class: near 50 % the interval is widest, a rare class's is narrow.
    per_class = differential({"a": 100, "b": 95, "c": 5}, max_width=0.13)
    assert [c.insufficient for c in per_class.classes] == [True, True, False]
    assert per_class.insufficient


def test_no_white_cells_gives_no_intervals_and_is_insufficient():
    d = differential({"neutrophil": 0, "lymphocyte": 0})
    assert d.total == 0 and d.insufficient
    assert all(c.interval is None and c.percent is None for c in d.classes)
    assert d.to_dict()["classes"]["neutrophil"]["low"] is None


def test_bad_input():
    with pytest.raises(ValueError):
        differential({"a": -1})
    with pytest.raises(ValueError):
        differential({"a": 1}, max_width=0)
    assert differential({"a": 1}).max_width == DEFAULT_MAX_WIDTH
