"""A small CNN for 8-class cell crops and 4-class fields, sized for 2 CPU cores.

Input: Nx3xSxS RGB in [0, 1] (as `edge.inference.classifier` prepares it); output: class
probabilities when built with `probabilities=True` (the exported graph), logits otherwise
(training).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

WIDTHS = (32, 64, 128, 256)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Block(nn.Module):
    """Strided 3x3 conv, then a residual 3x3 conv pair."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = _conv(cin, cout, 2)
        self.body = nn.Sequential(_conv(cout, cout, 1), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return torch.relu(x + self.body(x))


class SmallNet(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = WIDTHS,
                 probabilities: bool = False) -> None:
        super().__init__()
        self.stem = _conv(3, widths[0] // 2, 2)
        chans = (widths[0] // 2, *widths)
        self.stages = nn.Sequential(*(Block(a, b) for a, b in pairwise(chans)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(widths[-1], num_classes))
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the [0, 1] input inside the graph so the device needs no normalisation step.
        logits = self.head(self.stages(self.stem((x - 0.5) / 0.25)))
        return torch.softmax(logits, dim=1) if self.probabilities else logits
