"""Training augmentations for the classifiers (batched torch) and the exact image changes
used to measure robustness (OpenCV, independent of the training implementation): stain and
colour, resolution, geometry."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def shift_hue_saturation(image_rgb: np.ndarray, hue_deg: float, sat_scale: float) -> np.ndarray:
    """Rotate hue by `hue_deg` degrees and scale saturation by `sat_scale` (HSV, float)."""
    hsv = cv2.cvtColor(image_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + hue_deg) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * sat_scale, 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def hsv_shift(x: torch.Tensor, hue_deg: torch.Tensor, sat_scale: torch.Tensor,
              mirror: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image HSV hue rotation (degrees) and saturation scaling of an Nx3xHxW [0, 1] batch:
    the batched torch twin of `shift_hue_saturation` (value is kept). Images where `mirror`
    is true have their hue circle reflected (h -> -h) before the rotation."""
    value, top = x.max(dim=1)
    chroma = value - x.min(dim=1).values
    safe = chroma.clamp_min(1e-8)
    r, g, b = x.unbind(dim=1)
    hue = torch.where(top == 0, ((g - b) / safe) % 6,
                      torch.where(top == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    sat = torch.where(value > 0, chroma / value.clamp_min(1e-8), torch.zeros_like(value))
    if mirror is not None:
        hue = torch.where(mirror.view(-1, 1, 1), (6 - hue) % 6, hue)
    hue = (hue + hue_deg.view(-1, 1, 1) / 60.0) % 6
    sat = (sat * sat_scale.view(-1, 1, 1)).clamp(0.0, 1.0)
    # HSV -> RGB: channel n (R 5, G 3, B 1) = V - V*S*clamp(min(k, 4 - k), 0, 1), k = (n + H) % 6
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue) % 6
        out.append(value - value * sat * torch.minimum(k, 4 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def stain_jitter(x: torch.Tensor, gen: torch.Generator, hue_deg: float = 15.0,
                 sat: float = 0.4, cast: float = 0.08, brightness: float = 0.15,
                 gray_world_p: float = 0.3, mirror_p: float = 0.0) -> torch.Tensor:
    """Random colour per image of an Nx3xHxW [0, 1] batch: per-channel stain cast (log-normal
    gains), with probability `mirror_p` a reflected hue circle (one stain's nuclei bluer than
    its red cells, another's redder), HSV hue rotation and saturation scaling, brightness
    scaling and, with probability `gray_world_p`, gray-world normalisation."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    x = (x * torch.exp(torch.randn(n, 3, 1, 1, generator=gen) * cast)).clamp(0.0, 1.0)
    mirror = (torch.rand(n, generator=gen) < mirror_p).to(x.device) if mirror_p else None
    x = hsv_shift(x, uniform(-hue_deg, hue_deg).to(x.device),
                  uniform(1 - sat, 1 + sat).to(x.device), mirror)
    x = x * uniform(1 - brightness, 1 + brightness).view(n, 1, 1, 1).to(x.device)
    means = x.mean(dim=(2, 3), keepdim=True).clamp_min(1e-4)
    neutral = x * (means.mean(dim=1, keepdim=True) / means)
    pick = (torch.rand(n, generator=gen) < gray_world_p).view(n, 1, 1, 1).to(x.device)
    return torch.where(pick, neutral, x).clamp(0.0, 1.0)


def coarsen(image_rgb: np.ndarray, factor: float) -> np.ndarray:
    """The image as a camera `factor` times coarser would see it: area-downscaled, then
    bilinear-upscaled back to its size."""
    h, w = image_rgb.shape[:2]
    small = cv2.resize(image_rgb, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def resolution_jitter(x: torch.Tensor, gen: torch.Generator, max_factor: float = 3.5,
                      p: float = 0.5) -> torch.Tensor:
    """With probability `p` per image, coarsen it by a random factor in [1, max_factor]
    (area down, bilinear up): cells seen through cheaper optics or sensors, such as a
    640x480 camera on a field where the training crops were sharp."""
    n, _, h, w = x.shape
    pick = torch.rand(n, generator=gen) < p
    factors = 1 + (max_factor - 1) * torch.rand(n, generator=gen)
    out = x.clone()
    for i in torch.nonzero(pick).flatten().tolist():
        size = (max(1, round(h / float(factors[i]))), max(1, round(w / float(factors[i]))))
        small = torch.nn.functional.interpolate(x[i:i + 1], size=size, mode="area")
        out[i] = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear",
                                                 align_corners=False)[0]
    return out


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


# Optical density vectors of haematoxylin, eosin and DAB (Ruifrok & Johnston 2001): a basis
# in which a stain's uptake changes one coordinate, used to vary stains plausibly.
_HED_FROM_RGB = torch.linalg.inv(torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11],
                                               [0.27, 0.57, 0.78]]))
_RGB_FROM_HED = torch.linalg.inv(_HED_FROM_RGB)


def hed_jitter(x: torch.Tensor, gen: torch.Generator, scale: float = 0.2,
               shift: float = 0.03) -> torch.Tensor:
    """Per-image random stain uptake of an Nx3xHxW [0, 1] batch: each optical-density
    coordinate in the HED basis is scaled by U(1 - scale, 1 + scale) and shifted by
    U(-shift, shift), then mapped back to RGB."""
    n = x.shape[0]
    od = -torch.log(x.clamp_min(1e-3)).permute(0, 2, 3, 1)  # N x H x W x 3
    hed = od @ _HED_FROM_RGB.to(x.device)
    alpha = 1 + scale * (2 * torch.rand(n, 1, 1, 3, generator=gen) - 1)
    beta = shift * (2 * torch.rand(n, 1, 1, 3, generator=gen) - 1)
    od = (hed * alpha.to(x.device) + beta.to(x.device)) @ _RGB_FROM_HED.to(x.device)
    return torch.exp(-od.clamp_min(0)).permute(0, 3, 1, 2).clamp(0.0, 1.0)


def tone_jitter(x: torch.Tensor, gen: torch.Generator, gamma: float = 0.3,
                contrast: float = 0.25, noise: float = 0.02) -> torch.Tensor:
    """Per-image gamma (log-uniform within 1 -+ `gamma`), contrast about the image mean
    (U(1 - contrast, 1 + contrast)) and Gaussian sensor noise of up to `noise`."""
    n = x.shape[0]
    g = torch.exp(gamma * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)).to(x.device)
    c = (1 + contrast * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)).to(x.device)
    s = (noise * torch.rand(n, 1, 1, 1, generator=gen)).to(x.device)
    x = x.clamp_min(1e-4) ** g
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    return (x + s * torch.randn(x.shape, generator=gen).to(x.device)).clamp(0.0, 1.0)


def scale_jitter(x: torch.Tensor, gen: torch.Generator, low: float = 0.8,
                 high: float = 1.25) -> torch.Tensor:
    """Per-image zoom by a log-uniform factor in [low, high] and a free rotation (border
    pixels replicated, as the device pads a crop at a field's edge): the red-cell ruler and
    a cell's orientation both vary between fields."""
    n = x.shape[0]
    zoom = torch.exp(torch.empty(n).uniform_(float(np.log(low)), float(np.log(high)),
                                             generator=gen))
    angle = torch.rand(n, generator=gen) * 2 * np.pi
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                         torch.stack([sin, cos, torch.zeros(n)], 1)], 1).to(x.device)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)
