"""Stain and colour changes: the batched jitter used in training (torch) and the exact HSV
shift used to measure robustness (OpenCV, independent of the training implementation)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane, saturation its length.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def shift_hue_saturation(image_rgb: np.ndarray, hue_deg: float, sat_scale: float) -> np.ndarray:
    """Rotate hue by `hue_deg` degrees and scale saturation by `sat_scale` (HSV, float)."""
    hsv = cv2.cvtColor(image_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + hue_deg) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * sat_scale, 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def stain_jitter(x: torch.Tensor, gen: torch.Generator, hue_deg: float = 18.0,
                 sat: float = 0.4, cast: float = 0.08, brightness: float = 0.15,
                 gray_world_p: float = 0.3) -> torch.Tensor:
    """Random colour per image of an Nx3xHxW [0, 1] batch: per-channel stain cast (log-normal
    gains), hue rotation, saturation and brightness scaling, and, with probability
    `gray_world_p`, gray-world normalisation."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    x = x * torch.exp(torch.randn(n, 3, 1, 1, generator=gen) * cast)
    theta = torch.deg2rad(uniform(-hue_deg, hue_deg))
    s = uniform(1 - sat, 1 + sat)
    chroma = torch.zeros(n, 3, 3)
    chroma[:, 0, 0] = 1.0
    chroma[:, 1, 1], chroma[:, 1, 2] = s * torch.cos(theta), -s * torch.sin(theta)
    chroma[:, 2, 1], chroma[:, 2, 2] = s * torch.sin(theta), s * torch.cos(theta)
    matrix = _YIQ2RGB @ chroma @ _RGB2YIQ  # (n, 3, 3)
    x = torch.einsum("nij,njhw->nihw", matrix.to(x.device), x)
    x = x * uniform(1 - brightness, 1 + brightness).view(n, 1, 1, 1).to(x.device)
    means = x.mean(dim=(2, 3), keepdim=True).clamp_min(1e-4)
    neutral = x * (means.mean(dim=1, keepdim=True) / means)
    pick = (torch.rand(n, generator=gen) < gray_world_p).view(n, 1, 1, 1).to(x.device)
    return torch.where(pick, neutral, x).clamp(0.0, 1.0)


def geometric_jitter(x: torch.Tensor, gen: torch.Generator, shift: int) -> torch.Tensor:
    """Random flips, 90-degree rotations and shifts of up to `shift` pixels (reflect padding):
    cells and fields have no up or left."""
    n, _, h, w = x.shape
    flips = torch.rand(n, 2, generator=gen) < 0.5
    turns = torch.randint(0, 4, (n,), generator=gen)
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    padded = torch.nn.functional.pad(x, (shift,) * 4, mode="reflect") if shift else x
    out = torch.empty_like(x)
    for i in range(n):
        oy, ox = int(offsets[i, 0]), int(offsets[i, 1])
        img = padded[i, :, oy:oy + h, ox:ox + w] if shift else x[i]
        if flips[i, 0]:
            img = img.flip(2)
        if flips[i, 1]:
            img = img.flip(1)
        out[i] = torch.rot90(img, int(turns[i]), dims=(1, 2))
    return out
