"""A few hundred seeded cases of each fuzz target (issue #20; the scripts run 10,000 each, see
docs/reliability.md): no traceback, no case over 10 s."""

from __future__ import annotations

import importlib

import pytest

CASES = {"profiles": 300, "manifests": 150, "hub": 300, "bundles": 200}


@pytest.mark.parametrize("target", sorted(CASES))
def test_fuzz_target_has_no_traceback_and_no_hang(target):
    module = importlib.import_module(f"scripts.fuzz_{target}")
    targets = {"profiles": "PROFILES", "manifests": "MANIFESTS", "hub": "REQUESTS",
               "bundles": "BUNDLES"}
    campaign = module.campaign().drive(getattr(module, targets[target]), module.check,
                                       CASES[target], seed=1)
    assert campaign.cases == CASES[target]
    assert campaign.tracebacks == []
    assert campaign.hangs == []
    refused = sum(n for outcome, n in campaign.outcomes.items() if "refused" in outcome
                  or outcome.startswith("4"))
    assert 0 < refused < campaign.cases  # the cases reach both refusals and acceptance
