"""Unlabelled white cells of other clinics in training: consistency with confident guesses.

FixMatch (Sohn et al., NeurIPS 2020): the network's guess for a lightly changed view of an
unlabelled crop (turned, mirrored, shifted) becomes the target of a heavily changed view of
the same crop (the full training augmentation: stain, scale, resolution, tone), when the
guess is sure (probability >= THRESHOLD). The crops come from fields of other clinics
(`scripts/unlabelled_crops.py`): their white-cell types are never read, only their look,
so the network must give one answer to a cell whatever its stain and optics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.core.errors import HemascopeError
from edge.inference.classifier import resize_rgb

# Confidence for a guess to become a target: FixMatch's 0.95 is out of reach here, where
# training's label smoothing (0.05) caps a class's probability near 0.956 (0.55 % of the
# unlabelled crops passed it in a first epoch).
THRESHOLD = 0.8
WEIGHT = 1.0  # of the unlabelled loss against the labelled one (FixMatch's lambda_u)


def load_unlabelled(folder: Path, size: int) -> torch.Tensor:
    """(N, size, size, 3) uint8 crops of every image in `folder`, prepared as the
    classifier's input (`resize_rgb`)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []
    if not files:
        raise HemascopeError(f"--unlabelled {folder}: no images there",
                             "cut them first: python scripts/unlabelled_crops.py DATASET "
                             "--out DIR")
    crops = []
    for path in files:
        try:
            crops.append(resize_rgb(read_image(path), size))
        except ValueError as exc:
            raise HemascopeError(f"--unlabelled: {path} cannot be read ({exc})",
                                 "remove or replace that file") from exc
    return torch.from_numpy(np.stack(crops))


def consistency_loss(model: torch.nn.Module, weak: torch.Tensor, strong: torch.Tensor
                     ) -> tuple[torch.Tensor, float]:
    """Cross-entropy of the strong views against the sure guesses on the weak views
    (averaged over every crop, unsure ones counting zero), and the share of sure guesses."""
    with torch.no_grad():
        probs = torch.softmax(model(weak), dim=1)
        sure, guess = probs.max(dim=1)
        mask = (sure >= THRESHOLD).float()
    per_crop = torch.nn.functional.cross_entropy(model(strong), guess, reduction="none")
    return WEIGHT * (per_crop * mask).mean(), float(mask.mean())
