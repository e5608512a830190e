"""95 % confidence intervals for a proportion k/n: Wilson score and exact Clopper-Pearson.

The default (`proportion_interval`, method "auto") is Clopper-Pearson when the count is small
(k or n - k below `SMALL_COUNT`) and Wilson otherwise:

- Clopper-Pearson inverts the binomial test exactly, so its coverage is never below 95 %, and
  it is what haematologists already read: Rümke's table of confidence limits for differential
  counts (reproduced in CLSI H20) is exact binomial. Near k = 0 (basophils, blasts in a
  normal smear) Wilson's coverage dips below nominal (Brown, Cai & DasGupta, Statist. Sci.
  2001), and an under-covering interval on a rare class is the error that matters clinically.
- For larger counts Clopper-Pearson is conservative (coverage often 96-99 %, intervals wider
  than needed) while Wilson's coverage stays close to 95 % on average; so Wilson there.

The switch at 10 is measured, not guessed: over true proportions 0.002-0.5, the exact
coverage of this rule never falls below 92.8 % (n = 100), 93.7 % (n = 200) and 93.8 %
(n = 400), against 91.0 / 92.0 / 93.2 % for Wilson alone, and averages 95.1-95.4 %
(`scripts/clinical_coverage.py`, docs/clinical.md).

The beta quantile for Clopper-Pearson is found by bisection on the regularized incomplete
beta function, evaluated with its continued fraction (no scipy on the device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

Method = Literal["auto", "wilson", "clopper-pearson"]
SMALL_COUNT = 10  # "auto": Clopper-Pearson when k or n - k is below this
_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for a proportion (both ends in [0, 1])."""

    low: float
    high: float
    method: str

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, p: float) -> bool:
        return self.low <= p <= self.high


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float, tol: float = 1e-12) -> float:
    """Quantile of the Beta(a, b) distribution: the x with I_x(a, b) = q (bisection)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must be in [0, 1], got {q}")
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _check(k: int, n: int, confidence: float) -> float:
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return 1.0 - confidence


@lru_cache(maxsize=8192)  # pure; sessions of one stop count share (k, n) pairs
def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval: the beta quantiles that invert the binomial test."""
    alpha = _check(k, n, confidence)
    low = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return Interval(low, high, "clopper-pearson")


def wilson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval: the p whose score test at level 1 - confidence accepts k/n."""
    alpha = _check(k, n, confidence)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 or n the formula gives exactly 0 or 1; rounding must not push it over.
    return Interval(0.0 if k == 0 else max(0.0, centre - half),
                    1.0 if k == n else min(1.0, centre + half), "wilson")


def proportion_interval(k: int, n: int, method: Method = "auto",
                        confidence: float = 0.95) -> Interval:
    """The interval for k/n by `method`; "auto" is Clopper-Pearson when k or n - k is below
    SMALL_COUNT, else Wilson (the reasons are in this module's docstring)."""
    if method == "auto":
        method = "clopper-pearson" if min(k, n - k) < SMALL_COUNT else "wilson"
    if method == "clopper-pearson":
        return clopper_pearson(k, n, confidence)
    if method == "wilson":
        return wilson(k, n, confidence)
    raise ValueError(f"unknown interval method {method!r}; expected auto, wilson or "
                     "clopper-pearson")
