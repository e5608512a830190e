"""Estimates per field and per µL, and the exact Poisson interval behind them."""

from __future__ import annotations

import math

import pytest

from edge.clinical.estimates import (
    REFERENCE_RBC_PER_UL,
    estimate,
    gamma_ppf,
    gammainc,
    poisson_interval,
    ratio_field_factor,
)


def poisson_cdf(k: int, mu: float) -> float:
    return sum(math.exp(j * math.log(mu) - mu - math.lgamma(j + 1)) for j in range(k + 1))


@pytest.mark.parametrize(("a", "x"), [(1, 0.5), (3, 2.0), (10, 4.0), (10, 20.0), (150, 140.0)])
def test_gammainc_is_the_poisson_tail(a, x):
    # P(a, x) = P(Poisson(x) >= a) for integer a: an identity, not our code.
    assert gammainc(a, x) == pytest.approx(1 - poisson_cdf(a - 1, x), abs=1e-12)


def test_gammainc_half_integer_and_quantile_roundtrip():
    assert gammainc(0.5, 2.0) == pytest.approx(math.erf(math.sqrt(2.0)), abs=1e-12)
    for q, a in ((0.025, 1), (0.975, 8), (0.5, 300.5)):
        assert gammainc(a, gamma_ppf(q, a)) == pytest.approx(q, abs=1e-9)


@pytest.mark.parametrize("total", [1, 4, 37, 250, 2000])
def test_poisson_interval_ends_are_where_the_test_flips(total):
    low, high = poisson_interval(total)
    assert 1 - poisson_cdf(total - 1, low) == pytest.approx(0.025, abs=1e-8)  # P(X >= k | low)
    assert poisson_cdf(total, high) == pytest.approx(0.025, abs=1e-8)         # P(X <= k | high)


def test_poisson_interval_at_zero():
    low, high = poisson_interval(0)
    assert low == 0 and high == pytest.approx(-math.log(0.025), abs=1e-8)  # 3.689


def test_estimate_per_field_and_per_ul():
    wbc = estimate(total=180, fields=30, field_factor=1_000.0)
    assert wbc.per_field == pytest.approx(6.0) and wbc.per_ul == pytest.approx(6_000)
    low, _ = poisson_interval(180)
    assert wbc.per_field_low == pytest.approx(low / 30)
    assert wbc.per_ul_low == pytest.approx(1_000 * low / 30)
    assert wbc.per_ul_low < 6_000 < wbc.per_ul_high
    rbc = estimate(total=5_000, fields=25)
    assert rbc.per_field == 200 and rbc.per_ul is None and rbc.per_ul_high is None
    assert rbc.to_dict()["per_ul"] is None
    more = estimate(total=720, fields=120, field_factor=1_000.0)
    assert more.per_ul_high - more.per_ul_low < wbc.per_ul_high - wbc.per_ul_low


def test_estimate_bad_input():
    with pytest.raises(ValueError, match="at least one accepted field"):
        estimate(10, 0)
    with pytest.raises(ValueError):
        estimate(10, 5, field_factor=0)
    with pytest.raises(ValueError):
        poisson_interval(-1)


def test_ratio_field_factor_gives_cells_per_red_cell_times_the_reference():
    # 60 white cells and 30 000 red cells over 100 fields: 1 white cell per 500 red cells.
    factor = ratio_field_factor(30_000, 100, rbc_per_ul=5e6)
    wbc = estimate(60, 100, field_factor=factor)
    assert wbc.per_ul == pytest.approx(5e6 / 500)
    # the same smear seen through a camera with 4x the field: same estimate
    assert estimate(240, 100, ratio_field_factor(120_000, 100, 5e6)).per_ul == \
        pytest.approx(wbc.per_ul)
    assert ratio_field_factor(30_000, 100) == pytest.approx(REFERENCE_RBC_PER_UL / 300)
    assert ratio_field_factor(0, 100) is None
    with pytest.raises(ValueError):
        ratio_field_factor(10, 0)
