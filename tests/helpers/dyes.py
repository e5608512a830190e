"""Synthetic smears of known dyes, for the dye and stain-mixing tests."""

from __future__ import annotations

import numpy as np

NUCLEAR = np.array([0.65, 0.70, 0.29])  # absorbs red and green: nuclei blue-purple
EOSIN = np.array([0.25, 0.90, 0.35])  # absorbs green most: red cells pink


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def smear(nuclear: np.ndarray, eosin: np.ndarray, size: int = 64,
          strength: float = 1.0, nuclear_gain: float = 1.0) -> np.ndarray:
    """A white field whose pixels hold the two dyes in amounts that sweep from pure nuclear
    dye to pure eosin (with white background rows), drawn with the given dye vectors; the
    nuclear dye's amounts times `nuclear_gain`."""
    rng = np.random.default_rng(0)
    share = rng.uniform(0, 1, (size, size))
    amount = rng.uniform(0.3, 1.2, (size, size)) * strength
    amounts = np.stack([share * amount * nuclear_gain, (1 - share) * amount], axis=-1)
    amounts[:size // 6] = 0.0  # background: the slide's white, more than its brightest tenth
    od = amounts @ np.stack([unit(nuclear), unit(eosin)])
    return np.exp(-od)
