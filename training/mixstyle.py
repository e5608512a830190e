"""MixStyle (Zhou et al., ICLR 2021): new "labs" made in feature space while training.

A lab's stain, optics and camera show in the early feature maps' per-channel mean and
spread (their "style"). After each of a few early blocks, with probability `p` for that
block and batch (drawn anew for each block, as the paper's layers do), every crop's feature
maps are re-styled with a mix of its own and another crop's style
(weights from Beta(alpha, alpha)); what the maps show (their normalised pattern) is kept.
The network sees styles between and beyond its training labs and cannot use one lab's look
for a class. Training-only: the exported graph has no trace of it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BLOCKS = (2, 4, 7)  # EfficientNet-Lite0 blocks ending stages 2, 3 and 4 (of 7)


class MixStyle:
    """A forward hook that re-styles a block's output while the block is training."""

    def __init__(self, p: float, rng: np.random.Generator, alpha: float = 0.1,
                 eps: float = 1e-6) -> None:
        self.p, self.rng, self.alpha, self.eps = p, rng, alpha, eps

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) with each sample's channel mean and std mixed with another's."""
        n = len(x)
        mu = x.mean(dim=(2, 3), keepdim=True)
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        mu, sig = mu.detach(), sig.detach()  # as the paper: no gradient through the style
        lam = torch.from_numpy(self.rng.beta(self.alpha, self.alpha, (n, 1, 1, 1))).to(x)
        perm = torch.from_numpy(self.rng.permutation(n)).to(x.device)
        mixed_mu = lam * mu + (1 - lam) * mu[perm]
        mixed_sig = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * mixed_sig + mixed_mu

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor
                 ) -> torch.Tensor | None:
        if not module.training or len(output) < 2 or self.rng.random() >= self.p:
            return None
        return self.mix(output)


def attach(blocks: nn.ModuleList, hook: MixStyle) -> list[torch.utils.hooks.RemovableHandle]:
    """Register `hook` on the output of each of BLOCKS."""
    return [blocks[i].register_forward_hook(hook) for i in BLOCKS]
