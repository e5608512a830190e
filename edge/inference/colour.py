"""A crop's colour histograms: what a site-calibrated head reads beside the embedding.

The differential's graph sees every crop redrawn in one canonical stain, which hides the
site's own colours; within one site those colours do tell classes apart (an eosinophil's
orange granules, how much of the crop a lymphocyte's dark nucleus fills). Site calibration
fits weights for them from the reviewed cells: the joint RGB histogram (LEVELS levels per
channel, as shares of the pixels) of the crop as captured and as the graph takes it, each of
the whole crop and of its central half (where the white cell lies: the crop is 4.3 red-cell
diameters wide, centred on it). The histograms do not change when a crop is turned or
mirrored.
"""

from __future__ import annotations

import numpy as np

METHOD = "colour/1"
LEVELS = 4
SIZE = 4 * LEVELS ** 3  # features per crop


def histogram(image_rgb: np.ndarray) -> np.ndarray:
    """(LEVELS**3,) shares of an HxWx3 uint8 image's pixels in each colour cell."""
    q = (image_rgb.reshape(-1, 3) // (256 // LEVELS)).astype(np.int64)
    cells = (q[:, 0] * LEVELS + q[:, 1]) * LEVELS + q[:, 2]
    return (np.bincount(cells, minlength=LEVELS ** 3) / len(cells)).astype(np.float32)


def centre(image: np.ndarray) -> np.ndarray:
    """The central half of an image (a quarter of its area)."""
    h, w = image.shape[:2]
    return image[h // 4:h - h // 4, w // 4:w - w // 4]


def colour_features(captured_rgb: np.ndarray, graph_rgb: np.ndarray) -> np.ndarray:
    """(SIZE,) histograms of a crop as captured and as the graph takes it (same size), of
    the whole crop, then of its centre."""
    return np.concatenate([histogram(image) for image in (
        captured_rgb, graph_rgb, centre(captured_rgb), centre(graph_rgb))])
