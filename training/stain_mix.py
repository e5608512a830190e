"""Stain mixing: re-render a training crop in the stain of another smear.

A hue rotation moves a stain's two dyes together; a lab's stain moves them apart. A crop's
per-pixel dye amounts (`edge.inference.dyes`) are drawn again with the dye colours and overall
strength of an unlabelled smear from a *stain bank* (fields from other clinics, used for
their colours only, never for their labels); the crop keeps its own balance between its dyes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.dyes import Stain, estimate, restain

BANK_FORMAT = "hemascope-stain-bank/1"


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
            self.sources = record["sources"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HemascopeError(f"{path} is not a stain bank: {exc}",
                                 "write one with scripts/stain_bank.py") from None
        if not self.stains or any(s.vectors.shape != (3, 2) for s in self.stains):
            raise HemascopeError(f"{path} holds no usable stains",
                                 "write it again with scripts/stain_bank.py")
        self.path, self.sha256 = path, file_sha256(path)

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
