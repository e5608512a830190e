"""Synthetic "moving slide" videos: a technician scanning a smear by moving the stage by hand.

A canvas of synthetic smear fields is filmed through a 640x480 viewport that dwells at each
stop and glides between stops along minimum-jerk paths (how hands move: smooth acceleration
and deceleration), with varying speeds: short hops of about a quarter field, field-sized moves
and slow pans. The camera adds what a real one does: vignetting fixed to the sensor, motion
blur while the stage moves, fresh sensor noise on every frame and, optionally, illumination
flicker. The fields meet at hard seams (cells cut at the edges), each flattened to one
background first so that no brightness step shows. Test data and demos for settle detection
(`edge/settle.py`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.capture.synthetic import BACKGROUND_BGR, render_field

VIEW = (640, 480)  # viewport width, height in px
EXPOSURE = 0.3  # share of the frame interval the shutter is open: length of motion blur
# Moves: (probability, share of the field travelled, seconds taken).
MOVES = {
    "hop": (0.35, (0.2, 0.35), (0.3, 0.6)),
    "field": (0.45, (0.8, 1.1), (0.5, 1.1)),
    "slow": (0.2, (0.4, 0.9), (1.5, 3.0)),
}
DWELL_S = (0.8, 1.6)  # seconds the stage rests at a stop
REST_PX = 1.0  # px: a stage this close to its stop moves less (blur < 0.3 px): it is at rest
CANVAS_TILES = (4, 3)  # canvas size in fields (columns, rows)


def _flatten(tile: np.ndarray) -> np.ndarray:
    """Divide out a field's own vignetting and background colour: quadratic fit to its plasma."""
    small = cv2.resize(tile, (80, 60), interpolation=cv2.INTER_AREA).astype(np.float32)
    yy, xx = np.mgrid[0:1:60j, 0:1:80j]
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], -1)
    grey = small.mean(2)
    plasma = grey >= np.percentile(grey, 65)  # brightest pixels: no cells, pallor at most
    coef = np.linalg.lstsq(basis[plasma], small[plasma], rcond=None)[0]  # (6, 3)
    light = cv2.resize((basis @ coef).astype(np.float32), VIEW, interpolation=cv2.INTER_LINEAR)
    flat = tile.astype(np.float32) / light * np.asarray(BACKGROUND_BGR, np.float32)
    return np.clip(flat, 0, 255).astype(np.uint8)


def smear_canvas(rng: np.random.Generator, cols: int, rows: int) -> np.ndarray:
    """A large smear, (rows * 480) x (cols * 640) BGR: rendered fields on one background."""
    tiles = [[_flatten(render_field(rng, *VIEW)[0]) for _ in range(cols)] for _ in range(rows)]
    return np.vstack([np.hstack(row) for row in tiles])


def glide(start: np.ndarray, end: np.ndarray, frames: int) -> np.ndarray:
    """(frames, 2) minimum-jerk positions strictly between `start` and `end`."""
    t = np.arange(1, frames + 1) / (frames + 1)
    s = t**3 * (10 - 15 * t + 6 * t * t)
    return start + s[:, None] * (end - start)


def _next_stop(rng: np.random.Generator, here: np.ndarray, share: float, limit: np.ndarray,
               heading: np.ndarray) -> np.ndarray:
    """Battlement scan: along the row while it fits, else one step down (or up) the slide.

    `heading` (x, y directions, +-1) is updated in place when the scan turns.
    """
    step = share * np.asarray(VIEW, np.float64)
    wobble = rng.normal(0, 0.03, 2) * step  # hands do not move along one axis exactly
    along = here + np.array([heading[0] * step[0], wobble[1]])
    if 0 <= along[0] <= limit[0]:
        return np.clip(along, 0, limit)
    heading[0] *= -1
    if not 0 <= here[1] + heading[1] * step[1] <= limit[1]:
        heading[1] *= -1
    return np.clip(here + np.array([wobble[0], heading[1] * step[1]]), 0, limit)


def scan_path(rng: np.random.Generator, stops: int, canvas_size: tuple[int, int], fps: float
              ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Viewport top-left per frame, (n, 2), and each stop's (first, last) frame, inclusive.

    A stop starts at the first frame after the decelerating stage came within `REST_PX` of it:
    from there on the view is sharp and the same field. The stage is at rest at the first
    frame (recording starts at a stop).
    """
    limit = np.asarray(canvas_size, np.float64) - VIEW
    names = list(MOVES)
    chance = np.array([MOVES[n][0] for n in names])
    heading = np.array([1.0, 1.0])
    here = rng.uniform(0, 1, 2) * limit
    path: list[np.ndarray] = []
    ranges: list[tuple[int, int]] = []
    for stop in range(stops):
        if stop:
            _, share, seconds = MOVES[names[rng.choice(len(names), p=chance)]]
            there = _next_stop(rng, here, rng.uniform(*share), limit, heading)
            path.append(glide(here, there, round(rng.uniform(*seconds) * fps)))
            here = there
        first = sum(len(p) for p in path)
        if stop:  # the glide's tail within REST_PX of the stop is at rest, bar its first frame
            first -= max(0, int(np.sum(np.hypot(*(path[-1] - here).T) < REST_PX)) - 1)
        path.append(np.repeat(here[None], round(rng.uniform(*DWELL_S) * fps), 0))
        ranges.append((first, first + len(path[-1]) - 1))
    return np.concatenate(path), ranges


def _view(canvas: np.ndarray, before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """The viewport at top-left `now` (float32 BGR), blurred along the last part of the move."""
    blur = EXPOSURE * (now - before)
    centre = now - blur / 2 + (np.asarray(VIEW) - 1) / 2
    image = cv2.getRectSubPix(canvas, VIEW, (float(centre[0]), float(centre[1])),
                              patchType=cv2.CV_32F)
    kx, ky = (max(1, round(abs(b))) for b in blur)  # moves run nearly along one axis
    return image if kx == ky == 1 else cv2.blur(image, (kx, ky))


def film(path: Path, canvas: np.ndarray, positions: np.ndarray, fps: float,
         rng: np.random.Generator, noise: float = 2.0, flicker: float = 0.0) -> None:
    """Write the viewport at each position as an MJPG AVI through a simulated camera.

    `noise`: sensor noise sd in grey levels, fresh on every frame. `flicker`: sd of the frame's
    relative brightness and of a top-to-bottom brightness slope, drawn anew per frame.
    """
    width, height = VIEW
    yy, xx = np.mgrid[-1:1:height * 1j, -1:1:width * 1j].astype(np.float32)
    vignette = cv2.merge([1 - 0.06 * (xx * xx + yy * yy)] * 3)
    sloped = vignette * yy[..., None]
    grain = rng.standard_normal((height + 64, width + 64, 3), np.float32) * noise
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, VIEW)
    try:
        before = positions[0]
        for now in positions:
            gain, slope = rng.normal(0, flicker, 2) if flicker else (0.0, 0.0)
            light = cv2.addWeighted(vignette, 1 + gain, sloped, slope, 0)
            ox, oy = rng.integers(0, 64, 2)  # a fresh noise pattern: another crop of the grain
            image = cv2.multiply(_view(canvas, before, now), light)
            writer.write(cv2.convertScaleAbs(cv2.add(image, grain[oy:oy + height, ox:ox + width])))
            before = now
    finally:
        writer.release()


def write_moving_slide(path: Path, stops: int, seed: int, fps: int = 15, *, noise: float = 2.0,
                       flicker: float = 0.0) -> list[tuple[int, int]]:
    """Film a hand scan of a synthetic smear with `stops` stops to `path` (MJPG AVI).

    Returns each stop's (first, last) frame index, inclusive: the frames where the stage is at
    rest (see `scan_path`). Every other frame is taken while the stage moves.
    """
    rng = np.random.default_rng(seed)
    canvas = smear_canvas(rng, *CANVAS_TILES)
    positions, ranges = scan_path(rng, stops, canvas.shape[1::-1], fps)
    film(path, canvas, positions, fps, rng, noise=noise, flicker=flicker)
    return ranges
