"""Two ways to make a class look alike in every training laboratory's embedding, so that a
lab's stain, optics or camera cannot stand for a class (only LISC has many basophils: a
network may learn "LISC look" for basophil).

- `LabAdversary`: a class-conditional laboratory adversary (domain-adversarial training,
  Ganin et al. 2016, conditioned on the class as in Long et al. 2018's CDAN). A small head
  tries to tell which lab a crop of a known class came from; its gradient reaches the network
  reversed. Conditioning on the class matters: labs differ in class mix, so a plain adversary
  would also erase what tells the classes apart.
- `class_mean_gap`: a penalty on how far apart the labs' mean embeddings of one class lie.

Classes that only one lab has are left out of both. Training-only: the exported graph
contains neither. Neither helped on labs the model never saw (docs/models/classifiers.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by -weight."""
    return _Reverse.apply(x, weight)


def ramp(progress: float) -> float:
    """DANN's schedule from 0 to 1 over training (progress in [0, 1]): the adversary's pull
    grows as the classifier settles, which keeps early training stable."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class LabAdversary(nn.Module):
    """Predicts a crop's laboratory from its embedding and its (true) class."""

    def __init__(self, dim: int, classes: int, labs: int, shared: torch.Tensor,
                 hidden: int = 256) -> None:
        """`shared`: a (classes,) bool mask of the classes at least two labs have."""
        super().__init__()
        self.classes, self.labs = classes, labs
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, classes * labs))
        self.register_buffer("shared", shared.bool())

    def loss(self, embedding: torch.Tensor, label: torch.Tensor, lab: torch.Tensor,
             weight: float) -> torch.Tensor:
        """Cross-entropy of the lab guess on the crops of shared classes; the embedding
        receives its gradient reversed and scaled by `weight`."""
        keep = self.shared[label]
        if not bool(keep.any()):
            return embedding.sum() * 0.0
        logits = self.body(reverse_gradient(embedding[keep], weight))
        logits = logits.view(-1, self.classes, self.labs)
        rows = logits[torch.arange(len(logits)), label[keep]]
        return nn.functional.cross_entropy(rows, lab[keep])


def shared_classes(labels: torch.Tensor, labs: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes,) bool: which classes occur in two or more labs among these training items."""
    seen = torch.zeros(classes, int(labs.max()) + 1, dtype=torch.bool)
    seen[labels, labs] = True
    return seen.sum(dim=1) >= 2


def class_mean_gap(embedding: torch.Tensor, label: torch.Tensor, lab: torch.Tensor,
                   shared: torch.Tensor) -> torch.Tensor:
    """How far apart the labs' mean embeddings of one class lie in this batch, averaged over
    the shared classes two or more labs show in it, in units of the batch's variance: the
    ratio does not change when the embedding shrinks, so its gradient cannot collapse the
    embedding (with the variance held constant, a first run drove it to zero). Zero when no
    class has two labs here."""
    scale = embedding.var(dim=0).sum().clamp_min(1e-6)
    gaps = []
    for c in torch.unique(label[shared[label]]):
        rows = label == c
        means = torch.stack([embedding[rows & (lab == k)].mean(dim=0)
                             for k in torch.unique(lab[rows])])
        if len(means) > 1:
            gaps.append(((means - means.mean(dim=0)) ** 2).sum(dim=1).mean())
    if not gaps:
        return embedding.sum() * 0.0
    return torch.stack(gaps).mean() / scale
