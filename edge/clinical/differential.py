"""The white-cell differential with a 95 % confidence interval per class, and an
"insufficient" flag when an interval is wider than the profile allows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.clinical.intervals import Interval, Method, proportion_interval

# Widest acceptable interval (proportion points). A 100-cell count of a class near 50 % has
# a 95 % interval about 0.19-0.20 wide, so 0.20 accepts the customary 100-cell minimum and
# calls a smaller count insufficient.
DEFAULT_MAX_WIDTH = 0.20


@dataclass(frozen=True)
class ClassShare:
    """One class of the differential: count, share and its interval (None when nothing was
    classified)."""

    label: str
    count: int
    proportion: float | None
    interval: Interval | None
    insufficient: bool

    @property
    def percent(self) -> float | None:
        return None if self.proportion is None else 100 * self.proportion


@dataclass(frozen=True)
class Differential:
    """Per-class counts, shares and intervals of `total` classified white cells."""

    total: int
    classes: tuple[ClassShare, ...]
    max_width: float
    confidence: float

    @property
    def insufficient(self) -> bool:
        """True when any class's interval is wider than `max_width`, or nothing was counted."""
        return self.total == 0 or any(c.insufficient for c in self.classes)

    def share(self, label: str) -> ClassShare | None:
        return next((c for c in self.classes if c.label == label), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: percentages and interval ends in percent, rounded to 0.1."""
        def pct(x: float | None) -> float | None:
            return None if x is None else round(100 * x, 1)

        return {
            "classified": self.total, "confidence": self.confidence,
            "max_width_percent": pct(self.max_width), "insufficient": self.insufficient,
            "classes": {c.label: {
                "count": c.count, "percent": pct(c.proportion),
                "low": pct(c.interval.low) if c.interval else None,
                "high": pct(c.interval.high) if c.interval else None,
                "method": c.interval.method if c.interval else None,
                "insufficient": c.insufficient} for c in self.classes},
        }


def differential(counts: Mapping[str, int], *, max_width: float = DEFAULT_MAX_WIDTH,
                 method: Method = "auto", confidence: float = 0.95) -> Differential:
    """The differential of `counts` (label -> classified white cells; give every class, zeros
    included, so a class never seen still gets its interval). The caller leaves out labels
    that are not white cells (e.g. the classifier's "platelet" inside a white-cell box)."""
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"counts must be >= 0, got {dict(counts)}")
    if not 0 < max_width <= 1:
        raise ValueError(f"max_width must be in (0, 1], got {max_width}")
    total = sum(counts.values())
    shares = []
    for label, k in counts.items():
        if total == 0:
            shares.append(ClassShare(label, 0, None, None, True))
            continue
        interval = proportion_interval(k, total, method, confidence)
        shares.append(ClassShare(label, k, k / total, interval, interval.width > max_width))
    return Differential(total, tuple(shares), max_width, confidence)
