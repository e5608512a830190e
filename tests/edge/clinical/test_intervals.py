"""Proportion intervals: the incomplete beta and its quantile, Clopper-Pearson and Wilson
against independent computations and published values, and Rümke's table."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from edge.clinical.intervals import (
    SMALL_COUNT,
    beta_ppf,
    betainc,
    clopper_pearson,
    proportion_interval,
    wilson,
)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed directly."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


@pytest.mark.parametrize(("k", "n", "p"), [(1, 1, 0.3), (2, 4, 0.4), (3, 10, 0.25),
                                           (40, 100, 0.37), (95, 100, 0.97), (5, 500, 0.004)])
def test_betainc_is_the_binomial_tail(k, n, p):
    # I_p(k, n - k + 1) = P(X >= k), X ~ Binomial(n, p): an identity, not our code.
    assert betainc(k, n - k + 1, p) == pytest.approx(binom_sf(k, n, p), rel=1e-10, abs=1e-14)


def test_betainc_edges_symmetry_and_bad_input():
    assert betainc(2.5, 3.5, 0.0) == 0.0 and betainc(2.5, 3.5, 1.0) == 1.0
    assert betainc(0.5, 0.5, 0.5) == pytest.approx(0.5, abs=1e-12)  # arcsine law
    assert betainc(2.5, 7.0, 0.3) == pytest.approx(1 - betainc(7.0, 2.5, 0.7), abs=1e-12)
    with pytest.raises(ValueError):
        betainc(0, 1, 0.5)
    with pytest.raises(ValueError):
        betainc(1, 1, 1.5)


@pytest.mark.parametrize(("q", "a", "b"), [(0.025, 1, 100), (0.5, 2, 3), (0.975, 51, 50),
                                           (0.001, 0.5, 0.5), (0.999, 400, 3)])
def test_beta_ppf_inverts_betainc(q, a, b):
    assert betainc(a, b, beta_ppf(q, a, b)) == pytest.approx(q, abs=1e-9)


def test_beta_ppf_closed_forms():
    # Beta(1, b): F(x) = 1 - (1 - x)^b; Beta(a, 1): F(x) = x^a.
    assert beta_ppf(0.3, 1, 7) == pytest.approx(1 - 0.7 ** (1 / 7), abs=1e-10)
    assert beta_ppf(0.3, 4, 1) == pytest.approx(0.3 ** (1 / 4), abs=1e-10)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (7, 100), (50, 100), (13, 200), (99, 500)])
def test_clopper_pearson_ends_are_where_the_binomial_test_flips(k, n):
    ci = clopper_pearson(k, n)
    assert binom_sf(k, n, ci.low) == pytest.approx(0.025, abs=1e-8)          # P(X >= k | low)
    assert 1 - binom_sf(k + 1, n, ci.high) == pytest.approx(0.025, abs=1e-8)  # P(X <= k | high)


def test_clopper_pearson_at_zero_and_all():
    for n in (1, 20, 100, 500):
        assert clopper_pearson(0, n).low == 0.0
        assert clopper_pearson(0, n).high == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-10)
        assert clopper_pearson(n, n).low == pytest.approx(0.025 ** (1 / n), abs=1e-10)
        assert clopper_pearson(n, n).high == 1.0


# Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven
# methods. Stat Med 1998;17:857-872, table II (method 3: Wilson score; method 5: exact).
NEWCOMBE = [  # k, n, Wilson (low, high), Clopper-Pearson (low, high)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("k", "n", "w", "cp"), NEWCOMBE)
def test_wilson_and_clopper_pearson_match_newcombe_1998(k, n, w, cp):
    assert (wilson(k, n).low, wilson(k, n).high) == pytest.approx(w, abs=6e-5)
    assert (clopper_pearson(k, n).low, clopper_pearson(k, n).high) == pytest.approx(cp, abs=6e-5)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (7, 100), (50, 100), (130, 200), (499, 500)])
def test_wilson_ends_are_where_the_score_test_flips(k, n):
    z = NormalDist().inv_cdf(0.975)
    for p in (wilson(k, n).low, wilson(k, n).high):
        assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-9)


def test_auto_is_exact_for_small_counts_and_wilson_otherwise():
    n = 200
    assert proportion_interval(SMALL_COUNT - 1, n).method == "clopper-pearson"
    assert proportion_interval(n - SMALL_COUNT + 1, n).method == "clopper-pearson"
    assert proportion_interval(SMALL_COUNT, n).method == "wilson"
    assert proportion_interval(SMALL_COUNT, n) == wilson(SMALL_COUNT, n)
    assert proportion_interval(3, n, "wilson") == wilson(3, n)
    with pytest.raises(ValueError, match="unknown interval method"):
        proportion_interval(3, n, "wald")  # type: ignore[arg-type]
    for k, n_ in ((-1, 10), (11, 10), (0, 0)):
        with pytest.raises(ValueError):
            proportion_interval(k, n_)


# Rümke's 95 % confidence limits (in %) of an observed percentage in a differential count of
# n cells: Rümke CA, "The statistically expected variability in differential leukocyte
# counting", in Koepke JA (ed.), Differential Leukocyte Counting, College of American
# Pathologists 1977, pp. 39-45; the table reproduced in CLSI (NCCLS) H20-A2, Reference
# Leukocyte (WBC) Differential Count (Proportional) and Evaluation of Instrumental Methods,
# 2007. Transcribed from that reproduction; the search tool did not return a copy of the
# table, so check these figures against the printed page before citing them as verified.
# Observed %: {n: (low %, high %)}.
RUMKE = {
    0: {100: (0, 4), 200: (0, 2), 500: (0, 1)},
    1: {100: (0, 6), 200: (0, 4), 500: (0, 3)},
    2: {100: (0, 8), 200: (0, 6), 500: (0, 4)},
    3: {100: (0, 9), 200: (1, 7), 500: (1, 5)},
    4: {100: (1, 10), 200: (1, 8), 500: (2, 7)},
    5: {100: (1, 12), 200: (2, 10), 500: (3, 8)},
    6: {100: (2, 13), 200: (3, 11), 500: (4, 9)},
    7: {100: (2, 14), 200: (3, 12), 500: (5, 10)},
    8: {100: (3, 16), 200: (4, 13), 500: (5, 11)},
    9: {100: (4, 17), 200: (5, 14), 500: (6, 12)},
    10: {100: (4, 18), 200: (6, 16), 500: (7, 13)},
    15: {100: (8, 24), 200: (10, 21), 500: (12, 19)},
    20: {100: (12, 30), 200: (14, 27), 500: (16, 24)},
    25: {100: (16, 35), 200: (19, 32), 500: (21, 29)},
    30: {100: (21, 40), 200: (23, 37), 500: (26, 35)},
    35: {100: (25, 46), 200: (28, 43), 500: (30, 40)},
    40: {100: (30, 51), 200: (33, 48), 500: (35, 45)},
    45: {100: (35, 56), 200: (38, 53), 500: (40, 50)},
    50: {100: (39, 61), 200: (42, 58), 500: (45, 55)},
}


def rumke_deviations(interval=clopper_pearson) -> list[tuple[int, int, float, float]]:
    """(observed %, n, |low - table|, |high - table|) in percentage points, for every entry,
    and for the mirror entries 100 - % (the table is symmetric: limits of 100 - a are
    100 minus those of a)."""
    out = []
    for pct, row in RUMKE.items():
        for n, (lo, hi) in row.items():
            for k, (t_lo, t_hi) in ((pct * n // 100, (lo, hi)),
                                    (n - pct * n // 100, (100 - hi, 100 - lo))):
                ci = interval(k, n)
                out.append((pct, n, abs(100 * ci.low - t_lo), abs(100 * ci.high - t_hi)))
    return out


def test_clopper_pearson_reproduces_rumkes_table_within_its_whole_percent_rounding():
    deviations = rumke_deviations()
    assert len(deviations) == 2 * 19 * 3
    worst = max(max(d[2], d[3]) for d in deviations)
    assert worst < 1.0, [d for d in deviations if max(d[2], d[3]) >= 1.0]


def test_the_table_tells_exact_limits_from_score_limits():
    # The comparison can fail: Wilson's limits miss the table by more than its rounding.
    worst = max(max(d[2], d[3]) for d in rumke_deviations(wilson))
    assert worst > 1.0
