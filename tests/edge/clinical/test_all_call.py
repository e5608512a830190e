"""The session-level ALL call: three aggregations on synthetic per-field probabilities, and
wording that never diagnoses."""

from __future__ import annotations

import numpy as np
import pytest

from edge.clinical.all_call import AGGREGATIONS, CONFIRM, aggregate, all_call, describe

CLASSES = ("Benign", "Early", "Pre", "Pro")


def test_the_three_aggregations_on_a_small_hand_checked_session():
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.5, 0.1, 0.3, 0.1]])
    assert aggregate(probs, "mean") == pytest.approx([0.7 / 3, 1.4 / 3, 0.2, 0.1])
    geo = np.exp(np.log(probs).mean(axis=0))
    assert aggregate(probs, "geometric") == pytest.approx(geo / geo.sum())
    assert aggregate(probs, "vote") == pytest.approx([1 / 3, 2 / 3, 0, 0])
    call = all_call(probs, CLASSES, "mean")
    assert (call.label, call.fields) == ("Early", 3)
    assert call.agreement == pytest.approx(2 / 3)
    assert call.probability == pytest.approx(1.4 / 3)


def test_aggregations_differ_where_they_should():
    # One very confident Pro-B field among mildly Pre-B fields: the mean follows the many,
    # the geometric mean is pulled by the confident field's near-zero probabilities.
    probs = np.array([[0.1, 0.1, 0.55, 0.25]] * 4 + [[0.001, 0.001, 0.001, 0.997]])
    assert all_call(probs, CLASSES, "mean").label == "Pre"
    assert all_call(probs, CLASSES, "vote").label == "Pre"
    assert all_call(probs, CLASSES, "geometric").label == "Pro"


def test_geometric_sharpens_with_more_agreeing_fields_and_mean_does_not():
    one = np.array([[0.2, 0.2, 0.4, 0.2]])
    many = np.repeat(one, 20, axis=0)
    assert all_call(many, CLASSES, "mean").probability == pytest.approx(0.4)
    assert all_call(many, CLASSES, "geometric").probability == pytest.approx(0.4)
    mixed = np.array([[0.2, 0.2, 0.4, 0.2], [0.3, 0.2, 0.3, 0.2]] * 10)
    geo = all_call(mixed, CLASSES, "geometric").probabilities
    assert sum(geo.values()) == pytest.approx(1.0)


def test_simulated_sessions_recover_the_true_subtype():
    rng = np.random.default_rng(19)
    for truth in range(4):
        for aggregation in AGGREGATIONS:
            right = 0
            for _ in range(200):
                fields = int(rng.integers(10, 31))
                alpha = np.full(4, 1.0)
                alpha[truth] = 2.5  # noisy fields: each leans to the truth only on average
                probs = rng.dirichlet(alpha, size=fields)
                right += all_call(probs, CLASSES, aggregation).label == CLASSES[truth]
            assert right / 200 > 0.8, (truth, aggregation, right)


def test_vote_tie_goes_to_the_higher_mean_probability_and_zeros_are_safe():
    probs = np.array([[0.0, 0.0, 0.9, 0.1], [0.0, 0.0, 0.45, 0.55]])
    assert all_call(probs, CLASSES, "vote").label == "Pre"
    assert all_call(probs, CLASSES, "vote").probability == pytest.approx(0.5)
    assert np.isfinite(aggregate(probs, "geometric")).all()


def test_stored_dicts_are_accepted_and_bad_input_refused():
    stored = [{"Benign": 0.7, "Early": 0.1, "Pre": 0.1, "Pro": 0.1}] * 3
    assert all_call(stored, CLASSES).label == "Benign"
    with pytest.raises(ValueError):
        all_call(np.zeros((0, 4)), CLASSES)
    with pytest.raises(ValueError):
        all_call(np.ones((3, 3)) / 3, CLASSES)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(np.ones((2, 4)) / 4, "max")  # type: ignore[arg-type]


@pytest.mark.parametrize("label", CLASSES)
def test_wording_suggests_and_asks_for_confirmation_never_diagnoses(label):
    probs = np.full((12, 4), 0.1)
    probs[:, CLASSES.index(label)] = 0.7
    text = describe(all_call(probs, CLASSES))
    assert "suggest" in text or "consistent with" in text
    assert text.endswith(CONFIRM) and "immunophenotyping" in CONFIRM
    assert "12 of 12 fields agree" in text and "0.70" in text
    lowered = text.lower()
    assert "diagnosed" not in lowered and "diagnosis of" not in lowered
    assert "not a diagnosis" in lowered
    assert ("benign" in lowered) == (label == "Benign")
