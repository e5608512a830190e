"""Occlusion sensitivity: what a classifier's decision rested on.

Each square patch of the input is covered in turn with the image's mean colour; the drop in
the probability of the decided class is credited to the pixels of that patch. Areas whose
covering costs the most are what the decision rested on. It needs only the ONNX model (no
gradients, no torch), so it runs on the device.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.inference.classifier import Classifier


def occlusion_map(classifier: Classifier, image_rgb: np.ndarray, class_id: int,
                  patch: int, stride: int) -> np.ndarray:
    """(H, W) float32: mean probability drop of `class_id` when each pixel is covered."""
    h, w = image_rgb.shape[:2]
    base = float(classifier.probabilities([image_rgb])[0][class_id])
    fill = image_rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    drop = np.zeros((h, w), np.float32)
    hits = np.zeros((h, w), np.float32)
    for top in range(0, max(1, h - patch + stride), stride):
        for left in range(0, max(1, w - patch + stride), stride):
            covered = image_rgb.copy()
            covered[top:top + patch, left:left + patch] = fill
            p = float(classifier.probabilities([covered])[0][class_id])
            drop[top:top + patch, left:left + patch] += base - p
            hits[top:top + patch, left:left + patch] += 1
    return drop / np.maximum(hits, 1)


def overlay(image_rgb: np.ndarray, heat: np.ndarray, caption: str, scale: int = 3) -> np.ndarray:
    """BGR picture: the input beside the input tinted by `heat` (red: decision rested here;
    the colour scale spans 0 to the largest drop), with a caption under both."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    norm = np.clip(heat / max(float(heat.max()), 1e-6), 0, 1)
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blend = cv2.addWeighted(bgr, 0.5, colour, 0.5, 0)
    size = (bgr.shape[1] * scale, bgr.shape[0] * scale)
    pair = np.hstack([cv2.resize(im, size, interpolation=cv2.INTER_NEAREST)
                      for im in (bgr, blend)])
    band = np.full((28, pair.shape[1], 3), 255, np.uint8)
    cv2.putText(band, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.vstack([pair, band])
