"""Flags at and around their thresholds."""

from __future__ import annotations

import pytest

from edge.clinical.differential import differential
from edge.clinical.estimates import estimate
from edge.clinical.flags import Thresholds, evaluate_flags

T = Thresholds()
NORMAL = {"neutrophil": 120, "lymphocyte": 60, "monocyte": 12, "eosinophil": 6,
          "basophil": 2, "ig": 0, "erythroblast": 0}


def codes(**kwargs) -> list[str]:
    return [f.code for f in evaluate_flags(**{"fields": 30, **kwargs})]


def wbc_at(per_ul: float, fields: int = 100) -> object:
    """A white-cell estimate of exactly `per_ul` (factor 1000 /µL per cell per field)."""
    total = round(per_ul / 1000 * fields)
    return estimate(total, fields, field_factor=1000 * (per_ul / 1000 * fields) / total)


def test_a_normal_session_raises_nothing():
    assert codes(differential=differential(NORMAL), wbc=wbc_at(7000),
                 platelets=estimate(2500, 100, field_factor=10_000.0)) == []


@pytest.mark.parametrize(("per_ul", "expected"), [
    (3990, ["leukopenia"]), (4000, []), (10000, []), (10010, ["leukocytosis"])])
def test_white_cell_estimate_at_and_around_the_limits(per_ul, expected):
    assert codes(wbc=wbc_at(per_ul)) == expected


def test_definite_only_when_the_whole_interval_is_beyond():
    near = evaluate_flags(fields=30, wbc=estimate(39, 10, field_factor=1000.0))  # 3900/µL
    assert [f.code for f in near] == ["leukopenia"] and not near[0].definite
    far = evaluate_flags(fields=30, wbc=estimate(200, 100, field_factor=1000.0))  # 2000/µL
    assert far[0].definite and far[0].value == pytest.approx(2000)
    assert "2,000 /µL" in far[0].message and "below 4,000" in far[0].message


def test_thrombocytopenia_at_and_around_the_limit():
    assert codes(platelets=estimate(1500, 100, field_factor=10_000.0)) == []  # 150 000
    assert codes(platelets=estimate(1499, 100, field_factor=10_000.0)) == ["thrombocytopenia"]


def test_no_field_factor_no_concentration_flags():
    assert codes(wbc=estimate(5, 100), platelets=estimate(1, 100)) == []


def test_class_flags_on_percent_without_a_white_cell_estimate():
    at = differential({**NORMAL, "neutrophil": 80, "lymphocyte": 80, "eosinophil": 12,
                       "monocyte": 26})  # neutrophils 40 %, lymphocytes 40 %, eosinophils 6 %
    assert at.total == 200 and codes(differential=at) == []
    beyond = differential({**NORMAL, "neutrophil": 79, "lymphocyte": 81, "eosinophil": 13,
                           "monocyte": 25})
    assert codes(differential=beyond) == ["neutropenia", "lymphocytosis", "eosinophilia"]


def test_class_flags_on_absolute_counts_with_a_white_cell_estimate():
    d = differential(NORMAL)  # neutrophils 60 %, lymphocytes 30 %, eosinophils 3 %
    assert codes(differential=d, wbc=wbc_at(3000)) == ["leukopenia", "neutropenia"]  # 1800
    high = codes(differential=d, wbc=wbc_at(20000))  # lymphocytes 6000, eosinophils 600
    assert high == ["leukocytosis", "lymphocytosis", "eosinophilia"]
    flag = evaluate_flags(fields=30, differential=d, wbc=wbc_at(20000))[1]
    assert flag.value == pytest.approx(6000) and "/µL" in flag.message


def test_immature_cells_present_and_blasts():
    d = differential({**NORMAL, "ig": 2, "erythroblast": 1})
    flags = evaluate_flags(fields=30, differential=d)
    assert [f.code for f in flags] == ["immature-cells"] and flags[0].value == 3
    assert "ig 2" in flags[0].message and "erythroblast 1" in flags[0].message
    at = {"neutrophil": 80, "lymphocyte": 80, "blast": 40}  # 20 % blasts of 200
    assert "blasts" in codes(differential=differential(at))
    below = {"neutrophil": 81, "lymphocyte": 80, "blast": 39}
    assert "blasts" not in codes(differential=differential(below))
    assert "blasts" not in codes(differential=differential(at),
                                 thresholds=Thresholds(blasts_high_percent=25))


def test_too_few_fields_unreliable_and_imprecise():
    assert codes(fields=T.min_fields - 1) == ["too-few-fields"]
    assert codes(fields=T.min_fields) == []
    assert codes(differential_unreliable=True) == ["differential-unreliable"]
    small = differential({"neutrophil": 30, "lymphocyte": 20})  # 50 cells: too wide
    assert "differential-imprecise" in codes(differential=small)
    assert codes(differential=differential({"neutrophil": 0})) == []  # nothing classified
