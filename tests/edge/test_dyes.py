"""The two dyes of a smear (`edge.inference.dyes`): recovered nuclear dye first, redrawn in
another stain's dyes, and a whole crop brought to the canonical stain whatever its own."""

from __future__ import annotations

import numpy as np

from edge.inference.dyes import CANONICAL, Stain, estimate, normalise, restain
from tests.helpers.dyes import EOSIN, NUCLEAR, smear, unit


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(unit(a) @ unit(b), -1, 1))))


def test_the_two_dyes_are_recovered_nuclear_first():
    stain = estimate(smear(NUCLEAR, EOSIN))
    assert stain is not None
    assert _angle(stain.vectors[:, 0], NUCLEAR) < 3
    assert _angle(stain.vectors[:, 1], EOSIN) < 3


def test_a_blank_slide_has_no_stain():
    assert estimate(np.ones((64, 64, 3))) is None


def test_restaining_draws_the_same_dye_amounts_with_the_other_smears_colours():
    other_nuclear, other_eosin = np.array([0.3, 0.8, 0.5]), np.array([0.1, 0.6, 0.8])
    source = smear(NUCLEAR, EOSIN)
    own = estimate(source)
    target = Stain(np.stack([unit(other_nuclear), unit(other_eosin)], axis=1), own.strength)
    out = restain(source, own, target)
    expected = smear(other_nuclear, other_eosin)
    assert np.abs(out - expected).mean() < 0.02
    assert np.abs(source - expected).mean() > 0.05  # the colours did change
    assert np.abs(restain(source, own, own) - source).mean() < 0.01


def test_two_stains_of_one_crop_look_alike_once_normalised():
    """The same dye amounts drawn in two labs' colours and strengths: far apart as they are,
    close once each is normalised on its own."""
    a = (smear(NUCLEAR, EOSIN) * 255).astype(np.uint8)
    b = (smear(np.array([0.3, 0.8, 0.5]), np.array([0.1, 0.6, 0.8]), strength=1.6) * 255
         ).astype(np.uint8)
    before = np.abs(a.astype(float) - b).mean()
    after = np.abs(normalise(a).astype(float) - normalise(b)).mean()
    assert before > 25
    assert after < before / 4
    own = estimate(normalise(a) / 255.0)
    assert _angle(own.vectors[:, 0], CANONICAL.vectors[:, 0]) < 5
    assert _angle(own.vectors[:, 1], CANONICAL.vectors[:, 1]) < 5


def test_a_crop_without_stain_is_left_as_it_is():
    blank = np.full((32, 32, 3), 240, np.uint8)
    assert normalise(blank) is blank


def test_a_uint8_crop_is_normalised_as_its_float_copy_would_be():
    """`normalise` reads uint8 crops through a table: the same optical densities, so the same
    dyes and the same crop out, as the float path that training's restaining takes; black
    pixels included."""
    crop = (smear(NUCLEAR, EOSIN) * 255).astype(np.uint8)
    crop[-4:, -4:] = 0
    by_table, by_float = estimate(crop), estimate(crop / 255.0)
    assert np.allclose(by_table.vectors, by_float.vectors, atol=1e-9)
    assert np.allclose(by_table.strength, by_float.strength, atol=1e-9)
    floats = restain(crop / 255.0, by_float, CANONICAL)
    assert np.abs(normalise(crop) - floats * 255.0).max() <= 0.5 + 1e-6


def test_normalising_keeps_the_balance_between_a_crops_two_dyes():
    """One factor scales both dyes: a crop holding twice the nuclear dye (relative to eosin)
    of another still does once both are normalised. Scaling each dye on its own, as "dyes/1"
    did, gave every crop the same balance and amplified colour changes."""
    balances = []
    for gain in (1.0, 2.0):
        crop = (smear(NUCLEAR, EOSIN, nuclear_gain=gain) * 255).astype(np.uint8)
        own = estimate(normalise(crop) / 255.0)
        balances.append(own.strength[0] / own.strength[1])
    assert 1.6 < balances[1] / balances[0] < 2.5
