"""A session-level ALL subtype call from per-field probabilities, and its wording.

Three aggregations over the fields' probability vectors:
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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Aggregation = Literal["mean", "geometric", "vote"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "geometric", "vote")
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


def aggregate(probs: np.ndarray, aggregation: Aggregation = "mean") -> np.ndarray:
    """One probability vector from an (fields, classes) array of per-field probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"need an array of shape (fields >= 1, classes >= 2), got "
                         f"{probs.shape}")
    if aggregation == "mean":
        return probs.mean(axis=0)
    if aggregation == "geometric":
        logs = np.log(np.clip(probs, _FLOOR, 1.0)).mean(axis=0)
        weights = np.exp(logs - logs.max())
        return weights / weights.sum()
    if aggregation == "vote":
        return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / probs.shape[0]
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


def all_call(field_probs: Sequence[dict[str, float]] | np.ndarray, classes: Sequence[str],
             aggregation: Aggregation = "mean") -> AllCall:
    """The session call from per-field probabilities (dicts keyed by class, as stored, or an
    array in `classes` order). A tied vote goes to the class with the higher mean probability."""
    if len(field_probs) and isinstance(field_probs[0], dict):
        probs = np.array([[p[c] for c in classes] for p in field_probs], dtype=np.float64)
    else:
        probs = np.asarray(field_probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] != len(classes):
        raise ValueError(f"{probs.shape[1]} probabilities per field for {len(classes)} classes")
    combined = aggregate(probs, aggregation)
    tiebreak = combined + 1e-9 * probs.mean(axis=0) if aggregation == "vote" else combined
    best = int(np.argmax(tiebreak))
    return AllCall(label=classes[best], probability=float(combined[best]),
                   agreement=float(np.mean(probs.argmax(axis=1) == best)),
                   fields=int(probs.shape[0]), aggregation=aggregation,
                   probabilities={c: float(x) for c, x in zip(classes, combined, strict=True)})


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
