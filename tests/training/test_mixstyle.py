"""MixStyle re-styles feature maps in training only, keeping what they show."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.mixstyle import BLOCKS, MixStyle, attach  # noqa: E402


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), unbiased=False)


def test_mixing_moves_the_style_and_keeps_the_pattern() -> None:
    gen = torch.Generator().manual_seed(0)
    pattern = torch.randn(4, 3, 8, 8, generator=gen)
    pattern = (pattern - pattern.mean(dim=(2, 3), keepdim=True)) / pattern.std(
        dim=(2, 3), keepdim=True, unbiased=False)
    styles = torch.tensor([[0.0, 1.0, 2.0], [5.0, -1.0, 0.5], [10.0, 3.0, 1.0], [-4, 2, 7]])
    spreads = torch.tensor([[1.0, 2.0, 0.5], [3.0, 1.0, 1.0], [0.2, 4.0, 2.0], [1, 1, 1]])
    x = pattern * spreads[:, :, None, None] + styles[:, :, None, None]
    out = MixStyle(1.0, np.random.default_rng(3), alpha=0.5).mix(x)
    mu, sig = _stats(out)
    assert not torch.allclose(mu, styles, atol=1e-3)  # styles moved
    # every new style lies between two of the batch's styles, channel by channel
    low, high = styles.min(0).values - 1e-4, styles.max(0).values + 1e-4
    assert bool((mu >= low).all() and (mu <= high).all())
    restored = (out - mu[:, :, None, None]) / sig[:, :, None, None]
    assert torch.allclose(restored, pattern, atol=1e-3)  # what the maps show is kept


def test_the_hook_acts_in_training_only() -> None:
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(8))

    def run(x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = block(x)
        return x

    x = torch.rand(6, 3, 16, 16)
    blocks.eval()
    before = run(x)
    handles = attach(blocks, MixStyle(1.0, np.random.default_rng(0)))
    assert len(handles) == len(BLOCKS)
    assert torch.equal(run(x), before)  # evaluation (and export) untouched
    blocks.train()
    assert not torch.allclose(run(x), before)
    for h in handles:
        h.remove()
    assert torch.allclose(run(x), before)
