"""How unlike the training smears a session's stain is: a slide's stain moves every cell's
embedding by about the same amount, so the session's own white cells tell how far.

The shift is estimated against the training labs' mean embedding *for the session's own
class mix* (estimated from the shifted predictions, a few rounds), so a smear with 50 %
eosinophils is not mistaken for a strange stain. `distance` is the shift in units of the
spread between the class means; a session beyond the largest distance the training labs' own
sessions reach (the manifest's `reference_distance`) looks unlike anything the model was
trained on.

The shift is only measured, never applied to the labels: relabelling with it lifted
laboratories the model never saw, but distorted pathological smears at home, or hurt one
unseen laboratory, depending on the variant (docs/models/classifiers.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.inference.head import softmax

MIN_CELLS = 20  # fewer cells estimate a stain's shift too poorly to judge it
ROUNDS = 5


@dataclass(frozen=True)
class StainShift:
    """A session's estimated stain shift (what would move its embeddings onto training's)."""

    shift: np.ndarray  # (D,) float32
    mix: np.ndarray  # (C,) the session's estimated class shares
    distance: float  # |shift| / class-mean spread
    cells: int


def spread(class_means: np.ndarray) -> float:
    """Root-mean-square distance of the class means from their centre."""
    centred = class_means - class_means.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def estimate(embeddings: np.ndarray, class_means: np.ndarray, weights: np.ndarray,
             bias: np.ndarray, rounds: int = ROUNDS) -> StainShift:
    """The shift that moves the session's mean embedding onto the training mean of the
    session's own class mix (N x D embeddings, C x D class means, C x D weights)."""
    centre = embeddings.mean(axis=0)
    shift = np.zeros_like(centre)
    mix = np.full(len(class_means), 1.0 / len(class_means), np.float32)
    for _ in range(rounds):
        mix = softmax((embeddings + shift) @ weights.T + bias).mean(axis=0)
        shift = mix @ class_means - centre
    return StainShift(shift.astype(np.float32), mix.astype(np.float32),
                      float(np.linalg.norm(shift)) / max(spread(class_means), 1e-6),
                      len(embeddings))
