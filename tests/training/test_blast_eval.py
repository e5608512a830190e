"""scripts/blast_eval.py: the blast probability's ROC AUC and the issue's two operating points."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("blast_eval", ROOT / "scripts" / "blast_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roc_counts_ties_half_and_reads_both_operating_points():
    roc = load_script().roc
    blast = np.array([True, True, True, False, False, False])
    p = np.array([0.9, 0.5, 0.7, 0.5, 0.1, 0.8])
    result = roc(p, blast)
    assert result["auc"] == pytest.approx(6.5 / 9, abs=1e-4)  # (1.5 + 2 + 3) of 9 pairs
    # every blast called (p >= 0.5): only the 0.1 cell stays negative
    assert result["threshold_at_sensitivity_0.95"] == 0.5
    assert result["specificity_at_sensitivity_0.95"] == pytest.approx(1 / 3, abs=1e-4)
    # no other cell called (p > 0.8): one blast of three
    assert result["threshold_at_specificity_0.9"] == 0.8
    assert result["sensitivity_at_specificity_0.9"] == pytest.approx(1 / 3, abs=1e-4)
    separated = roc(np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.6]), blast)
    assert separated["auc"] == 1.0 == separated["specificity_at_sensitivity_0.95"]
