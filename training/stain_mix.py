"""Stain mixing: re-render a training crop in the stain of another smear.

A Romanowsky stain is two dyes (an azure / methylene-blue that colours nuclei purple-blue and
an eosin that colours red cells and granules pink-orange), and each laboratory's batch,
timing and camera give each dye its own colour. A hue rotation moves both dyes together; a
lab's stain moves them apart. Following Macenko et al. (ISBI 2009), each image's two dye
colours are estimated as optical-density vectors; a crop's per-pixel dye amounts are then
drawn again with the vectors and dye strengths of an unlabelled smear from a *stain bank*
(fields from other clinics, used for their colours only, never for their labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256

BANK_FORMAT = "hemascope-stain-bank/1"
WHITE_POINT_SHARE = 0.1  # the brightest share of pixels taken as the slide's white
OD_FLOOR = 0.15  # optical density below which a pixel is background (Macenko's beta)
ANGLE_PERCENTILE = 1.0  # robust extremes of the dye plane (Macenko's alpha)
MIN_PIXELS = 100


@dataclass(frozen=True)
class Stain:
    """Two dyes: unit optical-density vectors (3x2, the nuclear dye first) and each dye's
    99th-percentile amount."""
    vectors: np.ndarray
    strength: np.ndarray


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 [0, 1] float -> (H*W)x3 optical density after a white-point balance."""
    flat = rgb.reshape(-1, 3).astype(np.float64)
    k = max(1, int(len(flat) * WHITE_POINT_SHARE))
    white = np.partition(flat, len(flat) - k, axis=0)[-k:].mean(axis=0).clip(0.05, None)
    return -np.log((flat / white).clip(1.0 / 255.0, 1.0))


def estimate(rgb: np.ndarray) -> Stain | None:
    """The two dyes of an HxWx3 [0, 1] image, or None when it holds too little stain."""
    od = _optical_density(rgb)
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
    """An HxWx3 [0, 1] image whose dyes, estimated as `source`, are drawn as `target`'s."""
    od = _optical_density(rgb)
    amounts = (np.linalg.pinv(source.vectors) @ od.T).clip(0.0, None)
    amounts *= (target.strength / source.strength)[:, None]
    out = np.exp(-(target.vectors @ amounts).T).reshape(rgb.shape)
    return out.clip(0.0, 1.0).astype(rgb.dtype)


class StainBank:
    """Stains of unlabelled smears, read from a JSON file written by `scripts/stain_bank.py`."""

    def __init__(self, path: Path) -> None:
        try:
            record = json.loads(path.read_text())
            if record.get("format") != BANK_FORMAT:
                raise ValueError(f"format is {record.get('format')!r}, not {BANK_FORMAT}")
            self.stains = [Stain(np.asarray(s["vectors"], dtype=np.float64),
                                 np.asarray(s["strength"], dtype=np.float64))
                           for s in record["stains"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HemascopeError(f"{path} is not a stain bank: {exc}",
                                 "write one with scripts/stain_bank.py") from None
        if not self.stains or any(s.vectors.shape != (3, 2) for s in self.stains):
            raise HemascopeError(f"{path} holds no usable stains",
                                 "write it again with scripts/stain_bank.py")
        self.path, self.sha256, self.sources = path, file_sha256(path), record["sources"]

    def mix(self, x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
        """With probability `p` per image of an Nx3xHxW [0, 1] batch, re-render it in a
        random bank stain (images whose own stain cannot be estimated stay as they are)."""
        n = x.shape[0]
        pick = (torch.rand(n, generator=gen) < p).tolist()
        which = torch.randint(0, len(self.stains), (n,), generator=gen).tolist()
        out = x.clone()
        for i in range(n):
            if not pick[i]:
                continue
            image = x[i].permute(1, 2, 0).cpu().numpy()
            own = estimate(image)
            if own is not None:
                mixed = restain(image, own, self.stains[which[i]])
                out[i] = torch.from_numpy(mixed).permute(2, 0, 1).to(x.device)
        return out
