"""Synthetic differential sessions from known true proportions, fed field by field through the
stop rule: they stop at the right count, and the 95 % intervals cover the truth."""

from __future__ import annotations

import numpy as np
import pytest

from edge.clinical.differential import differential
from edge.clinical.stop_rule import FieldResult, Mode, Protocol, StopReason, StopRule

# A normal adult differential (Dacie and Lewis reference intervals' middle).
TRUTH = {"neutrophil": 0.60, "lymphocyte": 0.30, "monocyte": 0.06, "eosinophil": 0.03,
         "basophil": 0.01}
SESSIONS = 1000
WBC_PER_FIELD = 4.0  # Poisson mean white cells per field
REJECT = 0.15  # share of fields QC rejects (their cells must not count)


def run_sessions(target: int, rng: np.random.Generator) -> dict[str, float]:
    """Coverage per class over SESSIONS sessions stopping at `target` white cells; asserts
    each session stops at the first accepted field that reaches the target."""
    labels, p = list(TRUTH), np.array(list(TRUTH.values()))
    covered = dict.fromkeys(labels, 0)
    for _ in range(SESSIONS):
        rule = StopRule(Protocol(Mode.DIFFERENTIAL, white_cells=target))
        counts = np.zeros(len(labels), dtype=int)
        while True:
            cells = int(rng.poisson(WBC_PER_FIELD))
            accepted = rng.random() >= REJECT
            before = rule.progress.white_cells
            progress = rule.add(FieldResult(accepted, cells))
            if accepted:
                counts += rng.multinomial(cells, p)
            if progress.stop:
                break
        assert progress.reason == StopReason.TARGET
        assert before < target <= progress.white_cells == counts.sum()
        d = differential(dict(zip(labels, counts.tolist(), strict=True)))
        for label, truth in TRUTH.items():
            covered[label] += d.share(label).interval.contains(truth)
    return {label: n / SESSIONS for label, n in covered.items()}


@pytest.mark.parametrize("target", [100, 200, 400])
def test_sessions_stop_at_the_target_and_intervals_cover_the_truth(target):
    coverage = run_sessions(target, np.random.default_rng(target))
    for label, share in coverage.items():
        assert 0.93 <= share <= 0.99, (label, coverage)
        if target * TRUTH[label] >= 10:  # Wilson's side of the rule: close to nominal
            assert share <= 0.97, (label, coverage)
    assert 0.93 <= np.mean(list(coverage.values())) <= 0.97, coverage
