"""Flags for a session: counts outside adult reference intervals, cells that should not be in
blood, and results not to rely on.

Default thresholds are the adult reference intervals of Dacie and Lewis Practical
Haematology, 12th edition (Bain BJ, Bates I, Laffan MA, eds; Elsevier 2017), chapter 2,
table of haematological reference values for normal adults: white cells 4.0-10.0 x 10^9/L,
neutrophils 2.0-7.0 (40-80 %), lymphocytes 1.0-3.0 (20-40 %), eosinophils 0.02-0.5 (1-6 %),
platelets 150-410 x 10^9/L. The blast threshold is the WHO classification's 20 % for acute
leukaemia. Reference intervals differ between populations (e.g. lower neutrophil counts in
people of African ancestry): a profile should set the local laboratory's intervals.

A flag is raised when the point estimate crosses its threshold; `definite` says whether the
whole 95 % interval lies beyond it too (otherwise the count cannot tell the two sides apart).
Absolute class counts use the white-cell estimate when there is one (product of the interval
ends: conservative), else the class percentage.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.clinical.differential import ClassShare, Differential
from edge.clinical.estimates import Estimate

# Class names of the white-cell classifier (edge/models/wbc-differential.json). BLAST is not
# one of today's classes: the blast flag fires only with a classifier that has it.
NEUTROPHIL, LYMPHOCYTE, EOSINOPHIL, BLAST = "neutrophil", "lymphocyte", "eosinophil", "blast"
IMMATURE = ("ig", "erythroblast")  # immature granulocytes, nucleated red cells


@dataclass(frozen=True)
class Thresholds:
    """Flag thresholds (cells per µL and percent of classified white cells)."""

    wbc_low_per_ul: float = 4_000
    wbc_high_per_ul: float = 10_000
    platelets_low_per_ul: float = 150_000
    neutrophils_low_per_ul: float = 2_000
    neutrophils_low_percent: float = 40
    lymphocytes_high_per_ul: float = 3_000
    lymphocytes_high_percent: float = 40
    eosinophils_high_per_ul: float = 500
    eosinophils_high_percent: float = 6
    blasts_high_percent: float = 20
    min_fields: int = 10


@dataclass(frozen=True)
class Flag:
    """One flag: a stable code, a line for people, the value and threshold that raised it."""

    code: str
    message: str
    value: float | None = None
    threshold: float | None = None
    definite: bool = True


def _below(code: str, what: str, value: float, low: float, high: float, threshold: float,
           unit: str) -> Flag | None:
    """Flag when `value` < threshold; definite when the interval's top is below it too."""
    if value >= threshold:
        return None
    return Flag(code, f"{what} {value:,.0f} {unit} (95 % CI {low:,.0f}-{high:,.0f}) below "
                f"{threshold:,.0f}", value, threshold, high < threshold)


def _above(code: str, what: str, value: float, low: float, high: float, threshold: float,
           unit: str) -> Flag | None:
    """Flag when `value` > threshold; definite when the interval's bottom is above it too."""
    if value <= threshold:
        return None
    return Flag(code, f"{what} {value:,.0f} {unit} (95 % CI {low:,.0f}-{high:,.0f}) above "
                f"{threshold:,.0f}", value, threshold, low > threshold)


def _concentration(est: Estimate | None) -> tuple[float, float, float] | None:
    if est is None or est.per_ul is None:
        return None
    return est.per_ul, est.per_ul_low, est.per_ul_high  # type: ignore[return-value]


def _class_flag(code: str, what: str, share: ClassShare | None, wbc: Estimate | None,
                per_ul: float, percent: float, above: bool) -> Flag | None:
    """A class flag on the absolute count when the white-cell estimate exists, else on %."""
    if share is None or share.interval is None or share.proportion is None:
        return None
    test = _above if above else _below
    conc = _concentration(wbc)
    if conc is not None:
        value, low, high = conc
        return test(code, what, value * share.proportion, low * share.interval.low,
                    high * share.interval.high, per_ul, "/µL")
    return test(code, what, 100 * share.proportion, 100 * share.interval.low,
                100 * share.interval.high, percent, "%")


def evaluate_flags(*, fields: int, differential: Differential | None = None,
                   wbc: Estimate | None = None, platelets: Estimate | None = None,
                   differential_unreliable: bool = False,
                   thresholds: Thresholds | None = None) -> list[Flag]:
    """Every flag the session raises, in a fixed order. `fields` is the number of accepted
    fields; `differential_unreliable` is the existing too-many-cells-to-review check."""
    t = thresholds or Thresholds()
    flags: list[Flag | None] = []
    if fields < t.min_fields:
        flags.append(Flag("too-few-fields", f"only {fields} accepted fields (fewer than "
                          f"{t.min_fields}): estimates are unreliable", fields, t.min_fields))
    if (conc := _concentration(wbc)) is not None:
        flags.append(_below("leukopenia", "white cells (estimate)", *conc, t.wbc_low_per_ul,
                            "/µL"))
        flags.append(_above("leukocytosis", "white cells (estimate)", *conc, t.wbc_high_per_ul,
                            "/µL"))
    if (conc := _concentration(platelets)) is not None:
        flags.append(_below("thrombocytopenia", "platelets (estimate)", *conc,
                            t.platelets_low_per_ul, "/µL"))
    if differential is not None and differential.total > 0:
        d = differential
        flags.append(_class_flag("neutropenia", "neutrophils", d.share(NEUTROPHIL), wbc,
                                 t.neutrophils_low_per_ul, t.neutrophils_low_percent, False))
        flags.append(_class_flag("lymphocytosis", "lymphocytes", d.share(LYMPHOCYTE), wbc,
                                 t.lymphocytes_high_per_ul, t.lymphocytes_high_percent, True))
        flags.append(_class_flag("eosinophilia", "eosinophils", d.share(EOSINOPHIL), wbc,
                                 t.eosinophils_high_per_ul, t.eosinophils_high_percent, True))
        immature = {c.label: c.count for c in d.classes if c.label in IMMATURE and c.count}
        if immature:
            flags.append(Flag("immature-cells", "present: " + ", ".join(
                f"{label} {n}" for label, n in immature.items()), sum(immature.values()), 0))
        blasts = d.share(BLAST)
        if blasts is not None and blasts.interval is not None and blasts.proportion is not None \
                and 100 * blasts.proportion >= t.blasts_high_percent:
            flags.append(Flag("blasts", f"blasts {100 * blasts.proportion:.1f} % (95 % CI "
                              f"{100 * blasts.interval.low:.1f}-{100 * blasts.interval.high:.1f})"
                              f" at or above {t.blasts_high_percent:g} %",
                              100 * blasts.proportion, t.blasts_high_percent,
                              100 * blasts.interval.low >= t.blasts_high_percent))
        if d.insufficient:
            flags.append(Flag("differential-imprecise", f"a class's 95 % interval is wider "
                              f"than {100 * d.max_width:g} percentage points: count more cells"))
    if differential_unreliable:
        flags.append(Flag("differential-unreliable", "too many cells for review: the "
                          "differential is unreliable for this smear"))
    return [f for f in flags if f is not None]
