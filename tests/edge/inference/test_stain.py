"""The stain shift (edge.inference.stain) on embeddings whose truth is known: class means,
a stain offset and a class mix chosen here."""

import numpy as np
import pytest

from edge.inference.stain import estimate, spread

C, D = 5, 32


@pytest.fixture
def lab():
    """Class means and a nearest-mean linear head that reads them."""
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, (C, D)).astype(np.float32)
    weights = means.copy()
    bias = -0.5 * (means**2).sum(axis=1)
    return rng, means, weights, bias


def _session(rng, means, mix, offset, n=200, noise=0.3):
    y = rng.choice(C, n, p=mix)
    return means[y] + rng.normal(0, noise, (n, D)).astype(np.float32) + offset, y


def _accuracy(e, y, weights, bias, shift=0.0):
    return float((((e + shift) @ weights.T + bias).argmax(1) == y).mean())


def test_a_stain_offset_is_found_and_undone(lab):
    rng, means, w, b = lab
    offset = (3 * spread(means) * rng.normal(0, 1, D) / np.sqrt(D)).astype(np.float32)
    e, y = _session(rng, means, np.full(C, 1 / C), offset)
    found = estimate(e, means, w, b)
    assert _accuracy(e, y, w, b) < 0.8  # the offset hurts as is
    assert _accuracy(e, y, w, b, found.shift) > 0.95
    assert np.linalg.norm(found.shift + offset) < 0.25 * np.linalg.norm(offset)
    assert found.distance == pytest.approx(np.linalg.norm(offset) / spread(means), rel=0.25)
    assert found.cells == len(e)


def test_a_skewed_class_mix_is_not_mistaken_for_a_stain(lab):
    """Half the cells of one class, no stain offset: the shift stays small and the class's
    share is kept (a mix-blind shift would pull it towards the training mix)."""
    rng, means, w, b = lab
    mix = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    e, y = _session(rng, means, mix, np.zeros(D, np.float32))
    found = estimate(e, means, w, b)
    blind = means.mean(axis=0) - e.mean(axis=0)
    assert found.distance < 0.1
    assert np.linalg.norm(found.shift) < 0.2 * np.linalg.norm(blind)
    share = float((((e + found.shift) @ w.T + b).argmax(1) == 0).mean())
    assert share == pytest.approx(float((y == 0).mean()), abs=0.03)
    assert found.mix[0] == pytest.approx(0.6, abs=0.05)
