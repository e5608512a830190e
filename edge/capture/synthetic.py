"""Synthetic Wright/Giemsa blood-smear fields of view with exact ground-truth boxes.

Test data, and the image source of a machine without a camera. numpy and OpenCV only.

Cells are painted as optical density (OD, -ln(I / background)) so that overlapping cells
darken each other the way stained cells do in transmitted light; the field is then lit
(background colour, vignetting), defocused, given sensor noise and JPEG-compressed.

Default parameters were measured on the 163 TXL-PBC images (train + val) that come from
BCCD (640x480), using TXL-PBC's complete labels (shared/datasets/detection/txl-pbc):

- cells per field: WBC 1.04 (96 % one, 4 % two), RBC 23.3 +- 3.4 (p5 17, p95 28),
  platelets 1.18 (0: 36 %, 1: 26 %, 2: 27 %, 3: 6 %, 4+: 5 %).
- box sizes in px (cells not touching the border, p5 / median / p95): RBC width
  84 / 106 / 126, height 82 / 101 / 122, aspect (short/long side) p5 0.74, median 0.92;
  WBC 140 / 213 / 257; platelet boxes 31 / 40 / 57, their dark core 10 / 23 / 31 px.
  Annotated boxes are a few px loose (the radial profile fades from 0.9 of the box radius),
  so rendered cells are a little smaller than the boxes: tight RBC boxes median ~97 px.
- red-cell packing: nearest-neighbour centre distance / mean diameter p5 0.49, median 0.84.
- edge-cut cells are labelled: 47 % of RBC and 29 % of WBC boxes touch the border; RBCs are
  cut down to a depth/length ratio of 0.24 (p5), about 15-20 % of the cell's area inside.
- colours, BGR medians of real pixels: plasma outside all boxes (192, 198, 195), p10-p90 of
  per-image medians +-3; RBC ring (172, 161, 180), pallor centre (179, 184, 191); mean RBC
  pixels by darkness from (186, 187, 195) to (146, 140, 164) in overlaps, to which the
  saturating density model below is fitted; WBC nucleus (213, 99, 140) (darkest k-means
  cluster); cytoplasm (195, 167, 184), between the lightest k-means cluster (196, 179, 189)
  and the median non-nucleus pixel (194, 156, 179); an eosinophil's granular cytoplasm
  (172, 135, 174); platelet core p10 (187, 125, 139), median (199, 142, 154).
- optics: background high-pass (sigma 2) noise 1.7 / 1.4 / 1.4 grey levels, p99 Sobel
  gradient 60 (p10-p90 45-69), corners ~5 % darker than the centre. Rendered fields are
  blurred and noised to the same figures.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from edge.core import labels
from edge.core.detections import Detections
from edge.core.frame import Frame
from edge.core.labels import DETECTOR_CLASSES

WBC, RBC, PLATELET = (DETECTOR_CLASSES.index(c) for c in (labels.WBC, labels.RBC, labels.PLATELETS))

BACKGROUND_BGR = (192.0, 198.0, 195.0)
# Red-cell OD per unit haemoglobin density t (B, G, R), fitted to mean real RBC pixels:
# OD = a t for B and R, a t / (1 + k a t) for G, which saturates (haemoglobin absorbs a narrow
# band inside the broad green channel).
RBC_OD_SLOPE = (0.199, 0.417, 0.125)
RBC_GREEN_SATURATION = 1.12
RBC_PEAK_DENSITY = 0.62  # t at the thickest part of a single cell (ring colour above)
RBC_PALLOR_GLOW = (0.02, 0.02, 0.03)  # OD a clear pallor is brighter than the plasma
RBC_TINT_SD = (0.015, 0.035, 0.015)  # per-cell OD slope jitter: salmon to mauve cells
NUCLEUS_BGR = (213.0, 99.0, 140.0)
CYTOPLASM_BGR = (195.0, 167.0, 184.0)
EOSINOPHIL_BGR = (172.0, 135.0, 174.0)
PLATELET_BGR = (187.0, 125.0, 139.0)

RBC_COUNT = (23.3, 3.4)  # mean, sd of labelled red cells per field
RBC_DIAMETER = (103.0, 10.0, 78.0, 128.0)  # mean, sd, min, max in px
WBC_COUNT_P = (0.03, 0.87, 0.08, 0.02)  # P(0), P(1), P(2), P(3) white cells
PLATELET_COUNT_P = (0.36, 0.27, 0.27, 0.06, 0.04)  # P(0) .. P(4) platelets
PLATELET_SIZE = (22.0, 5.0, 14.0, 32.0)  # mean, sd, min, max of the dark core in px
MIN_VISIBLE = 0.25  # share of a cell's area inside the frame for it to be labelled
RBC_SPACING = (0.5, 0.85)  # a new red cell keeps >= U(range) x (r1 + r2) from the others


@dataclass(frozen=True)
class _Stain:
    """Per-field stain, optics and sensor: OD per component and image-level settings."""

    background: np.ndarray  # BGR float32
    rbc: np.ndarray  # OD slope per unit density (3,)
    nucleus: np.ndarray
    cytoplasm: np.ndarray
    eosinophil: np.ndarray
    platelet: np.ndarray
    blur: float  # Gaussian sigma in px, 0 = in focus
    noise: float  # sensor noise sigma in grey levels
    jpeg: int  # JPEG quality, 0 = none


@dataclass(frozen=True)
class _Patch:
    """One painted object in a square window at (x0, y0): what it adds to the field."""

    x0: int
    y0: int
    body: np.ndarray | None  # (n, n) bool where the cell is (alpha >= 0.5); None: unlabelled
    od: np.ndarray | None = None  # (n, n, 3) OD
    density: np.ndarray | None = None  # (n, n) red-cell density


def _od(bgr: tuple[float, ...]) -> np.ndarray:
    return -np.log(np.asarray(bgr, np.float32) / np.asarray(BACKGROUND_BGR, np.float32))


def _stain(rng: np.random.Generator) -> _Stain:
    """Random stain intensity/hue, focus and noise for one field, within BCCD's spread."""

    def od(bgr: tuple[float, ...], spread: float) -> np.ndarray:
        scale = rng.uniform(1 - spread, 1 + spread) * rng.uniform(0.93, 1.07, 3)
        return (_od(bgr) * scale).astype(np.float32)

    # Brighter by 2 % on average: the measured median includes the vignetted corners.
    background = np.asarray(BACKGROUND_BGR) * rng.uniform(0.99, 1.05) + rng.normal(0, 2.0, 3)
    return _Stain(
        background=background.astype(np.float32),
        rbc=(np.asarray(RBC_OD_SLOPE) * rng.uniform(0.82, 1.18) * rng.uniform(0.93, 1.07, 3)
             ).astype(np.float32),
        nucleus=od(NUCLEUS_BGR, 0.12),
        cytoplasm=od(CYTOPLASM_BGR, 0.25),
        eosinophil=od(EOSINOPHIL_BGR, 0.15),
        platelet=od(PLATELET_BGR, 0.15),
        blur=0.0 if rng.random() < 0.1 else float(rng.uniform(1.0, 2.0)),
        noise=float(rng.uniform(1.5, 2.5)),
        jpeg=int(rng.integers(70, 96)) if rng.random() < 0.8 else 0,
    )


def _texture(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Smooth zero-mean, unit-sd noise of grain `sigma` px on an n x n window."""
    t = cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (0, 0), sigma)
    return t / (t.std() + 1e-6)


def _window(cx: float, cy: float, half: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Window origin and local x (1, n), y (n, 1) coordinates relative to (cx, cy)."""
    x0, y0 = int(np.floor(cx)) - half, int(np.floor(cy)) - half
    idx = np.arange(2 * half + 2, dtype=np.float32)
    return x0, y0, (idx + (x0 - cx))[None, :], (idx + (y0 - cy))[:, None]


def _shape(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, a: float, b: float,
           wobble: float) -> np.ndarray:
    """Normalised radius (1 on the outline) of a rotated ellipse with a wavy outline."""
    t = rng.uniform(0, np.pi)
    c, s = float(np.cos(t)), float(np.sin(t))
    u, v = x * c + y * s, y * c - x * s
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    for k in (2, 3, 4):
        outline += wobble * rng.normal() / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.clip(outline, 0.85, 1.15)


def _edge(rho: np.ndarray, radius: float, soft: float) -> np.ndarray:
    """Alpha 1 inside, 0 outside, smooth across `soft` px around rho = 1."""
    a = np.clip((1 - rho) * radius / soft + 0.5, 0, 1)
    return a * a * (3 - 2 * a)


def _rbc(rng: np.random.Generator, cx: float, cy: float, d: float) -> _Patch:
    """Red cell: disc with a faint rim, soft (often off-centre) pallor, per-cell tint."""
    r = d / 2
    aspect = 1 - min(abs(rng.normal(0, 0.12)), 0.3)
    x0, y0, x, y = _window(cx, cy, int(r * 1.18) + 3)
    rho = _shape(rng, x, y, r, r * aspect, wobble=rng.uniform(0, 0.1))
    px, py = (float(v) for v in rng.normal(0, 0.08 * r, 2))
    pallor = r * rng.uniform(0.38, 0.62)
    rp = np.sqrt((x - px) ** 2 + (y - py) ** 2) / (pallor * np.sqrt(aspect))
    hole = (1 - 0.8 * rng.random() ** 1.5) * _edge(rp, pallor, soft=r * rng.uniform(0.15, 0.35))
    rim = rng.uniform(0.0, 0.3) * np.exp(-(((rho - 0.92) / 0.05) ** 2))
    body = _edge(rho, r, soft=1.5) * (1 + rim)
    density = body * (1 - hole) * (RBC_PEAK_DENSITY * rng.uniform(0.85, 1.15))
    tint = rng.normal(0, 1, 3) * np.asarray(RBC_TINT_SD, np.float32)
    glow = hole * rng.uniform(0, 1.5)
    od = density[..., None] * tint - glow[..., None] * np.asarray(RBC_PALLOR_GLOW, np.float32)
    return _Patch(x0, y0, rho <= 1, od=od.astype(np.float32), density=density)


# White cells: name -> (share of white cells, diameter mean, sd in px).
WBC_TYPES: dict[str, tuple[float, float, float]] = {
    "neutrophil": (0.50, 218.0, 18.0),
    "eosinophil": (0.20, 218.0, 18.0),
    "lymphocyte": (0.17, 155.0, 14.0),
    "monocyte": (0.13, 232.0, 18.0),
}


def _blob(rng: np.random.Generator, mask: np.ndarray, c: np.ndarray, radius: float,
          aspect: float = 1.0, value: int = 255) -> None:
    """Fill an irregular, rotated oval (lumpy outline) into `mask`."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    k = np.arange(2, 6)[:, None]
    bumps = (rng.normal(0, 0.06, (4, 1)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi, (4, 1))))
    rad = radius * (1 + bumps.sum(0))
    t = rng.uniform(0, np.pi)
    u, v = rad * np.cos(theta), rad * aspect * np.sin(theta)
    pts = np.stack([c[0] + u * np.cos(t) - v * np.sin(t), c[1] + u * np.sin(t) + v * np.cos(t)], 1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], value)


def _strand(mask: np.ndarray, p: np.ndarray, q: np.ndarray, width: float) -> None:
    cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, max(2, int(width)))


def _segmented(rng: np.random.Generator, mask: np.ndarray, c: np.ndarray, r: float) -> None:
    """Neutrophil: 2-5 lumpy lobes on an arc joined by chromatin strands."""
    n = int(rng.choice([2, 3, 4, 5], p=[0.15, 0.45, 0.3, 0.1]))
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.uniform(0.8, 1.3, n))
    centres = c + 0.38 * r * np.stack([np.cos(angles), np.sin(angles)], 1)
    for p, q in itertools.pairwise(centres):
        _strand(mask, p, q, 0.09 * r)
    for p in centres:
        _blob(rng, mask, p, r * np.sqrt(0.5 / n) * rng.uniform(0.85, 1.1), rng.uniform(0.65, 1))


def _bilobed(rng: np.random.Generator, mask: np.ndarray, c: np.ndarray, r: float) -> None:
    """Eosinophil: two large lobes, spectacle-like."""
    t = rng.uniform(0, 2 * np.pi)
    bend = rng.normal(0, 0.15) * r * np.array([-np.sin(t), np.cos(t)])
    ends = [c + s * 0.4 * r * np.array([np.cos(t), np.sin(t)]) + bend for s in (-1, 1)]
    _strand(mask, ends[0], ends[1], 0.07 * r)
    for p in ends:
        _blob(rng, mask, p, r * rng.uniform(0.36, 0.44), rng.uniform(0.65, 0.95))


def _round(rng: np.random.Generator, mask: np.ndarray, c: np.ndarray, r: float) -> None:
    """Lymphocyte: round nucleus filling most of the cell, slightly off-centre."""
    _blob(rng, mask, c + rng.normal(0, 0.06 * r, 2), r * rng.uniform(0.74, 0.84),
          rng.uniform(0.85, 1))


def _kidney(rng: np.random.Generator, mask: np.ndarray, c: np.ndarray, r: float) -> None:
    """Monocyte: large oval nucleus with a notch (kidney shape)."""
    t = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(t), np.sin(t)])
    centre = c - 0.1 * r * direction
    _blob(rng, mask, centre, r * rng.uniform(0.62, 0.72), rng.uniform(0.7, 0.85))
    _blob(rng, mask, centre + 0.62 * r * direction, r * rng.uniform(0.25, 0.32), value=0)


_NUCLEI: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, float], None]] = {
    "neutrophil": _segmented, "eosinophil": _bilobed, "lymphocyte": _round, "monocyte": _kidney,
}


def _wbc(rng: np.random.Generator, cx: float, cy: float, kind: str, r: float,
         s: _Stain) -> _Patch:
    """White cell: pale lilac (eosinophil: orange granular) cytoplasm, dark purple nucleus."""
    x0, y0, x, y = _window(cx, cy, int(r * 1.15) + 4)
    n = x.shape[1]
    rho = _shape(rng, x, y, r, r * rng.uniform(0.88, 1.0), wobble=0.08)
    alpha = _edge(rho, r, soft=2.0)
    mask = np.zeros((n, n), np.uint8)
    _NUCLEI[kind](rng, mask, np.array([cx - x0, cy - y0]), r)
    nucleus = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.3) * alpha
    granules = 1 + 0.22 * _texture(rng, n, 1.5)
    cytoplasm = (s.eosinophil if kind == "eosinophil" else s.cytoplasm) * granules[..., None]
    chromatin = s.nucleus * (1 + 0.2 * _texture(rng, n, 2.0))[..., None]
    od = (alpha - nucleus)[..., None] * cytoplasm + nucleus[..., None] * chromatin
    return _Patch(x0, y0, rho <= 1, od=od.astype(np.float32))


def _platelet(rng: np.random.Generator, cx: float, cy: float, s: _Stain) -> _Patch:
    """Small purple blob of a few merged dots, out of focus, in a faint diffuse halo."""
    size = float(np.clip(rng.normal(*PLATELET_SIZE[:2]), *PLATELET_SIZE[2:]))
    half = int(1.4 * size) + 4
    x0, y0, _, _ = _window(cx, cy, half)
    n = 2 * half + 2
    mask = np.zeros((n, n), np.float32)
    centre = np.array([cx - x0, cy - y0])
    for _ in range(int(rng.integers(2, 6))):
        p = centre + rng.normal(0, 0.15 * size, 2)
        cv2.circle(mask, (int(p[0]), int(p[1])), max(2, int(size * rng.uniform(0.28, 0.4))), 1, -1)
    core = cv2.GaussianBlur(mask, (0, 0), rng.uniform(1.0, 2.5))
    halo = cv2.GaussianBlur(mask, (0, 0), 0.3 * size) * rng.uniform(0.2, 0.5)
    alpha = core * (1 + 0.15 * _texture(rng, n, 1.0)) + halo
    return _Patch(x0, y0, core + halo >= 0.3, od=(s.platelet * alpha[..., None]).astype(np.float32))


def _speck(rng: np.random.Generator, cx: float, cy: float) -> _Patch:
    """Unlabelled dust/refraction ring: dark thin rim, bright centre."""
    x0, y0, x, y = _window(cx, cy, 8)
    ring = rng.uniform(2.5, 4.5)
    d = np.sqrt(x**2 + y**2)
    od = 0.12 * np.exp(-(((d - ring) / 1.0) ** 2)) - 0.05 * np.exp(-((d / (0.6 * ring)) ** 2))
    return _Patch(x0, y0, None, od=np.repeat(od[..., None], 3, 2).astype(np.float32))


def _visible(cx: np.ndarray, cy: np.ndarray, r: np.ndarray, width: int, height: int
             ) -> np.ndarray:
    """Approximate share of each disc's area inside the frame (13x13 sample grid)."""
    g = np.linspace(-1, 1, 13, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    disc = gx**2 + gy**2 <= 1
    px = cx[:, None] + r[:, None] * gx[disc]
    py = cy[:, None] + r[:, None] * gy[disc]
    return ((px >= 0) & (px < width) & (py >= 0) & (py < height)).mean(1)


def _place_wbcs(rng: np.random.Generator, width: int, height: int
                ) -> list[tuple[float, float, str, float]]:
    """Centres, kinds and radii of the white cells, never much overlapping each other."""
    names = list(WBC_TYPES)
    shares = np.array([WBC_TYPES[k][0] for k in names])
    placed: list[tuple[float, float, str, float]] = []
    for _ in range(int(rng.choice(len(WBC_COUNT_P), p=WBC_COUNT_P))):
        kind = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        _, mean, sd = WBC_TYPES[kind]
        r = float(np.clip(rng.normal(mean, sd), mean - 2.5 * sd, mean + 2.5 * sd)) / 2
        for _ in range(50):  # centres >= 0.65 r inside: ~30 % of boxes touch the border
            cx = rng.uniform(0.65 * r, width - 0.65 * r)
            cy = rng.uniform(0.65 * r, height - 0.65 * r)
            inside = _visible(np.array([cx]), np.array([cy]), np.array([r]), width, height)[0]
            apart = all(np.hypot(cx - x, cy - y) >= 0.95 * (r + q) for x, y, _, q in placed)
            if inside >= 0.6 and apart:
                placed.append((float(cx), float(cy), kind, r))
                break
    return placed


def _place_rbcs(rng: np.random.Generator, width: int, height: int,
                wbcs: list[tuple[float, float, str, float]]) -> np.ndarray:
    """(N, 3) centre x, y and diameter of red cells: random sequential packing."""
    target = int(np.clip(round(rng.normal(*RBC_COUNT)), 8, 34))
    mean, sd, lo, hi = RBC_DIAMETER
    n = 1000
    d = np.clip(rng.normal(mean, sd, n), lo, hi)
    cx = rng.uniform(-0.45 * d, width + 0.45 * d)
    cy = rng.uniform(-0.45 * d, height + 0.45 * d)
    spacing = rng.uniform(*RBC_SPACING, n)
    ok = _visible(cx, cy, d / 2, width, height) >= MIN_VISIBLE + 0.05
    for wx, wy, _, wr in wbcs:
        ok &= np.hypot(cx - wx, cy - wy) >= 0.9 * (wr + d / 2)
    cells: list[int] = []
    for i in np.flatnonzero(ok):
        j = np.asarray(cells, np.int64)
        if np.all(np.hypot(cx[j] - cx[i], cy[j] - cy[i]) >= spacing[i] * (d[j] + d[i]) / 2):
            cells.append(int(i))
            if len(cells) == target:
                break
    return np.stack([cx[cells], cy[cells], d[cells]], 1)


def _place_platelets(rng: np.random.Generator, width: int, height: int,
                     wbcs: list[tuple[float, float, str, float]], rbcs: np.ndarray
                     ) -> list[tuple[float, float]]:
    """Platelet centres: inside the frame, in the plasma between the other cells."""
    count = int(rng.choice(len(PLATELET_COUNT_P), p=PLATELET_COUNT_P))
    margin = min(20, width // 4, height // 4)
    xy = rng.uniform((margin, margin), (width - margin, height - margin), (200, 2))
    ok = np.all(np.hypot(xy[:, :1] - rbcs[:, 0], xy[:, 1:] - rbcs[:, 1]) >= 0.45 * rbcs[:, 2], 1)
    for wx, wy, _, wr in wbcs:
        ok &= np.hypot(xy[:, 0] - wx, xy[:, 1] - wy) > wr + 20
    placed: list[tuple[float, float]] = []
    for x, y in xy[ok].tolist():
        if len(placed) == count:
            break
        if all(np.hypot(x - px, y - py) > 40 for px, py in placed):
            placed.append((x, y))
    return placed


def _paint(od: np.ndarray, density: np.ndarray, p: _Patch) -> tuple[float, np.ndarray] | None:
    """Add a patch into the field's OD and red-cell density; its visible share and clipped box."""
    h, w = density.shape
    n = (p.od if p.od is not None else p.density).shape[0]
    ax, ay = max(p.x0, 0), max(p.y0, 0)
    bx, by = min(p.x0 + n, w), min(p.y0 + n, h)
    if ax >= bx or ay >= by:
        return None
    sub = (slice(ay - p.y0, by - p.y0), slice(ax - p.x0, bx - p.x0))
    if p.od is not None:
        od[ay:by, ax:bx] += p.od[sub]
    if p.density is not None:
        density[ay:by, ax:bx] += p.density[sub]
    if p.body is None or not p.body[sub].any():
        return None
    body, total = p.body[sub], p.body.sum()
    rows, cols = np.flatnonzero(body.any(1)), np.flatnonzero(body.any(0))
    box = np.array([ax + cols[0], ay + rows[0], ax + cols[-1] + 1, ay + rows[-1] + 1], np.float32)
    return float(body.sum() / total), box


def _red_od(density: np.ndarray, s: _Stain) -> np.ndarray:
    """OD of the red-cell density canvas (green saturating)."""
    b, g, r = (float(v) for v in s.rbc)
    green = density * g
    green /= 1 + RBC_GREEN_SATURATION * green
    return cv2.merge([density * b, green, density * r])


def _develop(od: np.ndarray, s: _Stain, rng: np.random.Generator) -> np.ndarray:
    """Light the OD field: background colour, vignetting, focus, noise, JPEG."""
    h, w = od.shape[:2]
    yy = (np.arange(h, dtype=np.float32)[:, None] - h * rng.uniform(0.35, 0.65)) / max(h, w)
    xx = (np.arange(w, dtype=np.float32)[None, :] - w * rng.uniform(0.35, 0.65)) / max(h, w)
    light = 1 - rng.uniform(0.05, 0.25) * (xx**2 + yy**2)
    image = cv2.multiply(cv2.exp(np.negative(od, out=od)),
                         cv2.merge([light * float(c) for c in s.background]))
    if s.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), s.blur)
    noise = rng.standard_normal((h, w), dtype=np.float32) * s.noise
    image += cv2.merge([noise, noise, noise])
    out = cv2.convertScaleAbs(np.maximum(image, 0, out=image))
    if s.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, s.jpeg])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out
    return out


def render_field(rng: np.random.Generator, width: int = 640, height: int = 480
                 ) -> tuple[np.ndarray, Detections]:
    """One field: HxWx3 BGR uint8 image and Detections (xyxy px boxes, class_id, confidence=1)."""
    s = _stain(rng)
    wbcs = _place_wbcs(rng, width, height)
    rbcs = _place_rbcs(rng, width, height, wbcs)
    patches = [(WBC, _wbc(rng, x, y, kind, r, s)) for x, y, kind, r in wbcs]
    patches += [(RBC, _rbc(rng, x, y, d)) for x, y, d in rbcs.tolist()]
    patches += [(PLATELET, _platelet(rng, x, y, s))
                for x, y in _place_platelets(rng, width, height, wbcs, rbcs)]
    od = np.zeros((height, width, 3), np.float32)
    density = np.zeros((height, width), np.float32)
    boxes, classes = [], []
    for cls, patch in patches:
        painted = _paint(od, density, patch)
        if painted is not None and painted[0] >= MIN_VISIBLE:
            boxes.append(painted[1])
            classes.append(cls)
    for _ in range(int(rng.integers(0, 7))):
        _paint(od, density, _speck(rng, rng.uniform(0, width), rng.uniform(0, height)))
    od += _red_od(density, s)
    return _develop(od, s, rng), Detections.from_arrays(np.reshape(boxes, (-1, 4)), classes)


class SyntheticSource:
    """Yields `count` Frames rendered from `seed`; frame i is reproducible on its own."""

    def __init__(self, count: int = 20, seed: int = 0, width: int = 640, height: int = 480
                 ) -> None:
        self.count, self.seed, self.width, self.height = count, seed, width, height
        self.name = f"synthetic:seed={seed}"

    def frames(self) -> Iterator[Frame]:
        for i in range(self.count):
            image, truth = render_field(np.random.default_rng([self.seed, i]), self.width,
                                        self.height)
            yield Frame(image, i, f"synthetic:{self.seed}:{i}", time.time(), truth)
