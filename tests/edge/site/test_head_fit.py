"""Site calibration's head fit (numpy): it learns the reviewed cells, keeps what the base
head knew of classes nobody reviewed, its cross-validated estimate is honest, and its colour
inputs are scaled and carried consistently."""

import numpy as np
import pytest

from edge.inference.colour import SIZE, colour_features, histogram
from edge.inference.head import LinearHead
from edge.site.calibrate import (
    cross_validated_accuracy,
    dihedral_views,
    fit_head,
    predict,
    site_inputs,
    site_means,
    start_head,
)
from edge.site.calibrate import logits as predict_logits


def _world(seed: int = 0, dim: int = 16, n: int = 40):
    """Embeddings of 4 classes; a base head that knows them as they were (nearest centre),
    and a site whose stain moves classes 0-2 onto each other's old places (and along a new
    direction), while class 3 stays put and is never reviewed."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * np.eye(dim)[:4]
    w0 = np.concatenate([centres, -0.5 * (centres ** 2).sum(1, keepdims=True)], axis=1)
    shifted = centres.copy()
    shifted[:3] = centres[[1, 2, 0]] + 2.0 * np.eye(dim)[10]
    labels = rng.integers(0, 3, n)
    x = shifted[labels] + rng.normal(0, 0.3, (n, dim))
    return w0, centres, shifted, x, labels


def test_the_fit_learns_the_site_and_keeps_an_unreviewed_class():
    w0, centres, shifted, x, y = _world()
    assert (predict(w0, x) == y).mean() < 0.1  # the base head is lost at this site
    w = fit_head(x, y, w0)
    assert (predict(w, x) == y).mean() == 1.0
    rng = np.random.default_rng(1)
    fresh = shifted[:3][np.repeat(np.arange(3), 20)] + rng.normal(0, 0.3, (60, x.shape[1]))
    assert (predict(w, fresh) == np.repeat(np.arange(3), 20)).mean() > 0.95
    # class 3 was never reviewed: its cells (unchanged at this site) are still recognised
    unreviewed = centres[3] + rng.normal(0, 0.3, (30, x.shape[1]))
    assert (predict(w0, unreviewed) == 3).mean() > 0.95
    assert (predict(w, unreviewed) == 3).mean() > 0.9


def test_a_strong_pull_keeps_the_base_head():
    w0, _, _, x, y = _world()
    assert np.abs(fit_head(x, y, w0, pull=1e6) - w0).max() < 1e-2
    assert np.abs(fit_head(x, y, w0, pull=0.0) - w0).max() > 0.1


def test_each_input_can_have_its_own_pull():
    w0, _, _, x, y = _world()
    held = np.arange(x.shape[1] + 1) < x.shape[1] // 2  # the first half held, the rest free
    moved = np.abs(fit_head(x, y, w0, pull=np.where(held, 1e6, 0.0)) - w0)
    assert moved[:, held].max() < 1e-2
    assert moved[:, ~held].max() > 0.1


def test_cross_validation_is_below_the_training_fit_on_noisy_labels():
    w0, _, _, x, y = _world(seed=2)
    noisy = y.copy()
    noisy[:6] = (noisy[:6] + 1) % 3  # six mislabelled cells
    w = fit_head(x, noisy, w0)
    cv = cross_validated_accuracy(x[:, None], noisy, w0)  # one view per cell
    assert cv <= (predict(w, x) == noisy).mean()
    assert 0.6 < cv < 1.0
    assert cross_validated_accuracy(x[:5, None], y[:5], w0) in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def test_the_head_round_trips_through_its_manifest_form():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    head = LinearHead.from_arrays(w, b)
    w2, b2 = LinearHead.model_validate_json(head.model_dump_json()).arrays()
    assert (w2 == w).all() and (b2 == b).all()
    with pytest.raises(ValueError, match="not 4x5"):
        LinearHead(classes=4, dim=5, weights=head.weights, bias=head.bias).arrays()


def test_the_eight_views_are_the_turns_and_mirrors_of_the_crop():
    crop = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    views = dihedral_views(crop)
    assert len(views) == 8 and (views[0] == crop).all()
    assert len({v.tobytes() for v in views}) == 8  # an asymmetric crop: 8 distinct views
    assert all(v.flags.c_contiguous and v.shape == crop.shape for v in views)
    assert (views[2] == crop[::-1, ::-1]).all()  # half a turn
    assert (views[4] == crop[:, ::-1]).all()  # mirrored


def test_colour_histograms_are_shares_that_turning_does_not_change():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    h = histogram(crop)
    assert h.shape == (64,) and abs(h.sum() - 1) < 1e-6
    assert all((histogram(v) == h).all() for v in dihedral_views(crop))
    white = np.full((16, 16, 3), 250, np.uint8)
    assert histogram(white)[-1] == 1.0  # every pixel in the brightest cell
    features = colour_features(crop, white)
    assert features.shape == (SIZE,) and (features[:64] == h).all()
    assert features[127] == features[-1] == 1.0  # the graph's crop, whole and centre
    dark_centre = white.copy()
    dark_centre[4:12, 4:12] = 0  # a dark cell filling the centre: a quarter of the crop
    centred = colour_features(dark_centre, dark_centre)
    assert centred[0] == 0.25 and centred[128] == 1.0 and centred[128 + 63] == 0.0


def test_a_head_with_colour_inputs_round_trips_and_refuses_a_wrong_size():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 7)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    mean, scale = rng.random(2).astype(np.float32), rng.random(2).astype(np.float32) + 0.5
    head = LinearHead.model_validate_json(
        LinearHead.from_arrays(w, b, ("colour/1", mean, scale)).model_dump_json())
    m2, s2 = head.feature_arrays()
    assert head.features == "colour/1" and (m2 == mean).all() and (s2 == scale).all()
    assert LinearHead.from_arrays(w, b).feature_arrays() is None
    wrong = head.model_copy(update={"feature_scale": LinearHead.from_arrays(
        w, b, ("colour/1", mean, np.ones(3, np.float32))).feature_scale})
    with pytest.raises(ValueError, match="2 feature means and 3 scales"):
        wrong.feature_arrays()


def test_calibrating_again_starts_from_the_same_logits_in_the_new_scaling():
    rng = np.random.default_rng(0)
    d, f = 5, 4
    w, b = rng.normal(size=(3, d + f)), rng.normal(size=3)
    old_mean, old_scale = rng.random(f), rng.random(f) + 0.5
    head = LinearHead.from_arrays(w.astype(np.float32), b.astype(np.float32),
                                  ("colour/1", old_mean.astype(np.float32),
                                   old_scale.astype(np.float32)))
    emb, colours = rng.normal(size=(6, 1, d)), rng.random((6, f))
    x_old = np.concatenate([emb[:, 0], (colours - old_mean) / old_scale], axis=1)
    before = x_old @ w.T + b
    x_new, mean, scale = site_inputs(emb, colours)
    assert np.allclose(x_new[:, 0, d:].mean(axis=0), 0) and np.allclose(mean, colours.mean(0))
    start = start_head(head, mean, scale)
    assert np.allclose(predict_logits(start, x_new[:, 0]), before, atol=1e-4)
    fresh = start_head(LinearHead.from_arrays(w[:, :d].astype(np.float32),
                                              b.astype(np.float32)), mean, scale)
    assert start.shape == fresh.shape == (3, d + f + 1) and not fresh[:, d:d + f].any()


def test_the_site_reference_moves_reviewed_classes_only():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 3)).astype(np.float32)
    emb, labels = rng.normal(size=(6, 3)), np.array([0, 0, 2, 2, 2, 0])
    means = site_means(base, emb, labels)
    assert np.allclose(means[0], emb[labels == 0].mean(0))
    assert np.allclose(means[2], emb[labels == 2].mean(0))
    assert (means[[1, 3]] == base[[1, 3]]).all() and (base != means).any()
