"""Session adaptation: a slide's stain moves every cell's embedding by about the same amount,
so the session's own unlabelled cells tell how far, and the head reads them moved back.

The shift is estimated against the training labs' mean embedding *for the session's own
class mix* (estimated from the adapted predictions, a few rounds): a smear with 50 %
eosinophils is not pulled towards the training labs' balanced mix, only its stain is
corrected. `distance` (the shift in units of the spread between the class means) says how
unlike the training smears the session looks.

The estimate starts from no shift, so a change that looks exactly like a change of class mix
is read as one and left alone: adaptation never erases a real eosinophilia, at the price of
missing a stain shift that mimics it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.inference.head import softmax

MIN_CELLS = 20  # fewer cells estimate the stain's shift too poorly to use
ROUNDS = 5
UNFAMILIAR_FACTOR = 1.5  # distance above this times the training labs' own: unfamiliar


@dataclass(frozen=True)
class Adaptation:
    """A session's estimated stain shift (added to each embedding before the head)."""

    shift: np.ndarray  # (D,) float32
    mix: np.ndarray  # (C,) the session's estimated class shares
    distance: float  # |shift| / class-mean spread
    cells: int


def spread(class_means: np.ndarray) -> float:
    """Root-mean-square distance of the class means from their centre."""
    centred = class_means - class_means.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def estimate(embeddings: np.ndarray, class_means: np.ndarray, weights: np.ndarray,
             bias: np.ndarray, rounds: int = ROUNDS) -> Adaptation:
    """The shift that moves the session's mean embedding onto the training mean of the
    session's own class mix (N x D embeddings, C x D class means, C x D weights)."""
    centre = embeddings.mean(axis=0)
    shift = np.zeros_like(centre)
    mix = np.full(len(class_means), 1.0 / len(class_means), np.float32)
    for _ in range(rounds):
        mix = softmax((embeddings + shift) @ weights.T + bias).mean(axis=0)
        shift = mix @ class_means - centre
    return Adaptation(shift.astype(np.float32), mix.astype(np.float32),
                      float(np.linalg.norm(shift)) / max(spread(class_means), 1e-6),
                      len(embeddings))
