"""A session-level ALL subtype call from per-field probabilities, and its wording.

Three aggregations over the fields' probability vectors (standard library only):
- "mean": the arithmetic mean of the probabilities (a mixture: one confident field cannot
  outvote many).
- "geometric": the normalised geometric mean (mean log-probability, then softmax): treats
  fields as independent evidence, so it sharpens with more fields, and is overconfident when
  fields of one smear are correlated.
- "vote": each field's top class; the "probability" is the winning share of fields, not a
  calibrated probability.
Which is calibrated is measured on held-out fields (issue #19), not assumed here.

The wording never states a diagnosis: it "suggests" or is "consistent with", and always asks
for confirmation by smear review and immunophenotyping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["mean", "geometric", "vote"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "geometric", "vote")
# The aggregation reports use, by the rule fixed before measuring (lowest worst-condition ECE
# of the session probability, held-out ALL fields in simulated sessions of 10-30 fields, 10
# colour and resolution conditions): the geometric mean, worst ECE 0.007 against 0.063 (mean)
# and 0.042 (vote). Every aggregation called every simulated session right, so this says the
# mean and the vote are under-confident here; how the geometric mean behaves on a wrong session
# was not measured (none occurred). scripts/all_aggregation.py, docs/clinical.md.
SESSION_AGGREGATION: Aggregation = "geometric"
BENIGN = "Benign"
# The ALL model's class names (edge/models/all-subtype.json) as a report spells them.
SUBTYPE_NAMES = {"Benign": "benign", "Early": "early pre-B", "Pre": "pre-B", "Pro": "pro-B"}
CONFIRM = "Confirm by smear review and immunophenotyping."
_FLOOR = 1e-12  # log of a zero probability


@dataclass(frozen=True)
class AllCall:
    """The session's call, its probability under the aggregation, and field agreement (the
    share of fields whose own top class is the call)."""

    label: str
    probability: float
    agreement: float
    fields: int
    aggregation: Aggregation
    probabilities: dict[str, float]


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def aggregate(probs: Sequence[Sequence[float]], aggregation: Aggregation = "mean") -> list[float]:
    """One probability vector from per-field probability vectors (fields x classes; a list of
    lists or an array). Standard library only, so that reports and the sync payload, which
    call it, load no numpy."""
    rows = [[float(x) for x in row] for row in probs]
    width = len(rows[0]) if rows else 0
    if not rows or width < 2 or any(len(row) != width for row in rows):
        raise ValueError(f"need fields >= 1 probability vectors of one length >= 2, got "
                         f"{len(rows)} of lengths {sorted({len(r) for r in rows})}")
    n = len(rows)
    if aggregation == "mean":
        return [math.fsum(col) / n for col in zip(*rows, strict=True)]
    if aggregation == "geometric":
        logs = [math.fsum(math.log(min(1.0, max(x, _FLOOR))) for x in col) / n
                for col in zip(*rows, strict=True)]
        top = max(logs)
        weights = [math.exp(v - top) for v in logs]
        total = math.fsum(weights)
        return [w / total for w in weights]
    if aggregation == "vote":
        votes = [0] * width
        for row in rows:
            votes[_argmax(row)] += 1
        return [v / n for v in votes]
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


def all_call(field_probs: Sequence[Mapping[str, float]] | Sequence[Sequence[float]],
             classes: Sequence[str], aggregation: Aggregation = "mean") -> AllCall:
    """The session call from per-field probabilities (dicts keyed by class, as stored, or
    vectors in `classes` order). A tied vote goes to the class with the higher mean
    probability."""
    rows = [[p[c] for c in classes] if isinstance(p, Mapping) else list(p) for p in field_probs]
    if rows and any(len(row) != len(classes) for row in rows):
        raise ValueError(f"{len(rows[0])} probabilities per field for {len(classes)} classes")
    combined = aggregate(rows, aggregation)
    if aggregation == "vote":
        mean = aggregate(rows, "mean")
        best = max(range(len(classes)), key=lambda i: (combined[i], mean[i]))
    else:
        best = _argmax(combined)
    agree = sum(_argmax(row) == best for row in rows) / len(rows)
    return AllCall(label=classes[best], probability=combined[best], agreement=agree,
                   fields=len(rows), aggregation=aggregation,
                   probabilities=dict(zip(classes, combined, strict=True)))


def describe(call: AllCall) -> str:
    """One sentence for a report: suggests / consistent with, never a diagnosis."""
    agree = round(call.agreement * call.fields)
    measure = "vote share" if call.aggregation == "vote" else f"{call.aggregation} probability"
    evidence = f"{measure} {call.probability:.2f}, {agree} of {call.fields} fields agree"
    name = SUBTYPE_NAMES.get(call.label, call.label)
    if call.label == BENIGN:
        text = f"The field scores are consistent with a benign smear ({evidence})."
    else:
        text = (f"The field scores suggest B-lymphoblastic leukaemia, {name} subtype "
                f"({evidence}).")
    return f"{text} Screening aid, not a diagnosis. {CONFIRM}"
