"""Count estimates from cells per field: WBC/µL and platelets/µL (with a field factor), RBC
per field; each with a 95 % interval from a Poisson model of the total count.

The field factor converts mean cells per field into cells per µL of blood: it is the inverse
of the blood volume one field of the counting area represents. It depends on the objective,
the camera's field of view and where on the smear the fields are taken, so it must come from
the device's own calibration (factor = reference analyser count / mean cells per field on
calibration smears); the textbook factors for manual estimates (e.g. WBC per 40x field x 2000)
are for an eyepiece, not for this camera. Without a calibrated factor, `ratio_field_factor`
gives one from the field's own red cells: the cells' ratio to the red cells counted in the same
fields, times a reference red-cell count (the textbook factors are such ratios in disguise: a
100x oil field "with about 200 red cells" x 20 000 platelets/µL is 4 x 10^6 red cells/µL).

The interval is the exact (Garwood) Poisson interval for the total count over the fields,
divided by the fields: it carries counting error only. Smear unevenness (fields vary more
than Poisson) and the factor's own calibration error add to it, so the true uncertainty is
wider: these are estimates, not analyser counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_EPS = 1e-15
_TINY = 1e-300
# The red-cell count a ratio estimate assumes (cells/µL): the mean of the middles of the adult
# reference intervals in Hoffbrand and Moss, Essential Haematology, appendix 1 "Normal values"
# (men 4.5-6.5, women 3.9-5.6 x 10^12/L: 5.5 and 4.75). Anaemia makes a ratio estimate too
# high by this / the true count.
REFERENCE_RBC_PER_UL = 5.1e6


def gammainc(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) for a > 0, x >= 0 (series below a + 1,
    continued fraction above)."""
    if a <= 0 or x < 0:
        raise ValueError(f"gammainc needs a > 0 and x >= 0, got {a}, {x}")
    if x == 0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        while abs(term) > abs(total) * _EPS:
            ap += 1
            term *= x / ap
            total += term
        return total * math.exp(log_front)
    b = x + 1 - a  # modified Lentz for the continued fraction of Q(a, x)
    c, d = 1 / _TINY, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        if abs(d * c - 1) < _EPS:
            return 1.0 - math.exp(log_front) * h
    raise ArithmeticError(f"incomplete gamma did not converge for a={a}, x={x}")


def gamma_ppf(q: float, a: float, tol: float = 1e-10) -> float:
    """Quantile of the Gamma(a, 1) distribution (bisection on `gammainc`)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    lo, hi = 0.0, a + 10 * math.sqrt(a) + 50  # P(a, hi) > 1 - 1e-12 for any a > 0
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if gammainc(a, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def poisson_interval(total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for the mean of a Poisson count that came out as `total`."""
    if total < 0 or not 0 < confidence < 1:
        raise ValueError(f"need total >= 0 and 0 < confidence < 1, got {total}, {confidence}")
    alpha = 1 - confidence
    low = 0.0 if total == 0 else gamma_ppf(alpha / 2, total)
    return low, gamma_ppf(1 - alpha / 2, total + 1)


@dataclass(frozen=True)
class Estimate:
    """Mean cells per field with its interval and, given a field factor, cells per µL."""

    total: int
    fields: int
    per_field: float
    per_field_low: float
    per_field_high: float
    field_factor: float | None = None

    def _per_ul(self, x: float) -> float | None:
        return None if self.field_factor is None else x * self.field_factor

    @property
    def per_ul(self) -> float | None:
        return self._per_ul(self.per_field)

    @property
    def per_ul_low(self) -> float | None:
        return self._per_ul(self.per_field_low)

    @property
    def per_ul_high(self) -> float | None:
        return self._per_ul(self.per_field_high)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "fields": self.fields, "per_field": self.per_field,
                "per_field_low": self.per_field_low, "per_field_high": self.per_field_high,
                "field_factor": self.field_factor, "per_ul": self.per_ul,
                "per_ul_low": self.per_ul_low, "per_ul_high": self.per_ul_high}


def estimate(total: int, fields: int, field_factor: float | None = None,
             confidence: float = 0.95) -> Estimate:
    """Mean cells per field over `fields` accepted fields that held `total` cells, with the
    Poisson interval; with `field_factor` (cells/µL per cell per field, from the device's
    calibration) also cells per µL. RBC per field: call without a factor."""
    if fields <= 0:
        raise ValueError(f"an estimate needs at least one accepted field, got {fields}")
    if field_factor is not None and field_factor <= 0:
        raise ValueError(f"field_factor must be > 0, got {field_factor}")
    low, high = poisson_interval(total, confidence)
    return Estimate(total, fields, total / fields, low / fields, high / fields, field_factor)


def ratio_field_factor(rbc_total: int, fields: int,
                       rbc_per_ul: float = REFERENCE_RBC_PER_UL) -> float | None:
    """A field factor from the red cells counted in the same fields: `rbc_per_ul` / mean red
    cells per field, so that cells/µL = (cells / red cells) x `rbc_per_ul`, whatever the optics
    and smear thickness. None without red cells (no ratio to take)."""
    if fields <= 0 or rbc_per_ul <= 0:
        raise ValueError(f"need fields > 0 and rbc_per_ul > 0, got {fields}, {rbc_per_ul}")
    return None if rbc_total <= 0 else rbc_per_ul * fields / rbc_total
