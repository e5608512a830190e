"""The two dyes of a Romanowsky-stained smear (numpy only, used on the device and in training).

An azure / methylene-blue dye colours nuclei purple-blue and an eosin colours red cells and
granules pink-orange; each laboratory's batch, timing and camera give each dye its own colour
and strength. Following Macenko et al. (ISBI 2009), an image's two dye colours are estimated
as optical-density vectors; its per-pixel dye amounts can then be drawn again with other
vectors and strength (`restain`): those of another smear (training's stain mixing) or a
fixed canonical stain (`normalise`, identical in training and on the device).

The amounts are scaled by one factor for both dyes, the geometric mean of the two dyes'
strength ratios: the crop's own balance between its dyes (a basophil's dark granules, a
lymphocyte's thin cytoplasm) is kept. Scaling each dye on its own ("dyes/1", session 15)
amplified colour changes: a hue shift of 10 degrees moved a normalised crop almost three
times as far as the raw one (scripts/dye_invariance.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The brightest share of each channel's pixels taken as the slide's white, here and in the
# classifier graph's own white balance (training.classify_model.white_balance).
WHITE_POINT_SHARE = 0.1
OD_FLOOR = 0.15  # optical density below which a pixel is background (Macenko's beta)
ANGLE_PERCENTILE = 1.0  # robust extremes of the dye plane (Macenko's alpha)
MIN_PIXELS = 100
# The manifest's `input.stain` of a classifier trained on `normalise`'s output.
METHOD = "dyes/2"


@dataclass(frozen=True)
class Stain:
    """Two dyes: unit optical-density vectors (3x2, the nuclear dye first) and each dye's
    99th-percentile amount (their geometric mean is the stain's strength)."""
    vectors: np.ndarray
    strength: np.ndarray


# The median dye colours and strengths of 600 unlabelled fields from other clinics
# (training/stain-banks/unlabelled-fields.json): where `normalise` brings every crop.
CANONICAL = Stain(np.array([[0.641, 0.417], [0.722, 0.726], [0.261, 0.547]]),
                  np.array([0.907, 1.649]))


# -log(v / 255) of every uint8 value (0 is black: infinite, clipped like any ratio below 1/255).
with np.errstate(divide="ignore"):
    _UINT8_OD = -np.log(np.arange(256) / 255.0)


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 [0, 1] float or RGB uint8 -> (H*W)x3 optical density after a white-point
    balance (uint8 through a table: the same values, at a fraction of the cost)."""
    flat = rgb.reshape(-1, 3)
    k = max(1, int(len(flat) * WHITE_POINT_SHARE))
    white = np.partition(flat, len(flat) - k, axis=0)[-k:].mean(axis=0, dtype=np.float64)
    if flat.dtype == np.uint8:
        white = (white / 255.0).clip(0.05, None)
        return (_UINT8_OD[flat] + np.log(white)).clip(0.0, np.log(255.0))
    white = white.clip(0.05, None)
    return -np.log((flat.astype(np.float64) / white).clip(1.0 / 255.0, 1.0))


def estimate(rgb: np.ndarray) -> Stain | None:
    """The two dyes of an HxWx3 [0, 1] float or RGB uint8 image, or None when it holds too
    little stain."""
    return _estimate(_optical_density(rgb))


def _estimate(od: np.ndarray) -> Stain | None:
    stained = od[(od > OD_FLOOR).all(axis=1)]
    if len(stained) < MIN_PIXELS:
        return None
    _, vecs = np.linalg.eigh(np.cov(stained.T))
    plane = vecs[:, [2, 1]]  # the two largest
    plane *= np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    proj = stained @ plane
    angle = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angle, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    pair = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (lo, hi)]
    pair = [v * np.sign(v.sum()) / max(np.linalg.norm(v), 1e-8) for v in pair]
    # The nuclear dye absorbs red light more, relative to its total, than eosin does.
    pair.sort(key=lambda v: -v[0] / max(v.sum(), 1e-8))
    vectors = np.stack(pair, axis=1)
    if abs(np.linalg.det(vectors.T @ vectors)) < 1e-6:
        return None
    amounts = np.linalg.pinv(vectors) @ stained.T
    strength = np.percentile(amounts, 99, axis=1).clip(1e-3, None)
    return Stain(vectors, strength)


def restain(rgb: np.ndarray, source: Stain, target: Stain) -> np.ndarray:
    """An HxWx3 [0, 1] image whose dyes, estimated as `source`, are drawn in `target`'s
    colours and overall strength."""
    return _redraw(_optical_density(rgb), source, target).reshape(rgb.shape).astype(rgb.dtype)


def _redraw(od: np.ndarray, source: Stain, target: Stain) -> np.ndarray:
    amounts = (np.linalg.pinv(source.vectors) @ od.T).clip(0.0, None)
    amounts *= np.sqrt(np.prod(target.strength / source.strength))
    return np.exp(-(target.vectors @ amounts).T).clip(0.0, 1.0)


def normalise(image_rgb: np.ndarray, target: Stain = CANONICAL) -> np.ndarray:
    """An HxWx3 RGB uint8 image redrawn in `target`'s dyes (as it is when it holds too little
    stain to estimate its own)."""
    od = _optical_density(image_rgb)
    own = _estimate(od)
    if own is None:
        return image_rgb
    return (_redraw(od, own, target).reshape(image_rgb.shape) * 255.0 + 0.5).astype(np.uint8)
