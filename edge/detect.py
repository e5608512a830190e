"""Detector pre- and post-processing: letterbox, decode of a YOLO head, non-maximum suppression.

Pure functions on numpy arrays, so they are tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.detections import Detections


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: scale, then padding (left, top)."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114
              ) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to size (height, width), centred. BGR in, BGR out."""
    h, w = image.shape[:2]
    th, tw = size
    scale = min(th / h, tw / w)
    nh, nw = round(h * scale), round(w * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) \
        else image
    top, left = (th - nh) // 2, (tw - nw) // 2
    out = cv2.copyMakeBorder(resized, top, th - nh - top, left, tw - nw - left,
                             cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return out, Letterbox(scale, float(left), float(top))


def to_tensor(image_bgr: np.ndarray) -> np.ndarray:
    """HxWx3 BGR uint8 -> 1x3xHxW RGB float32 in [0, 1]."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_yolo(output: np.ndarray, lb: Letterbox, image_shape: tuple[int, int],
                conf_threshold: float, iou_threshold: float, max_det: int = 1000) -> Detections:
    """Decode an anchor-free YOLO head output (1, 4 + C, A): cx, cy, w, h then class scores.

    Boxes are mapped back from the letterboxed input to the original image and clipped.
    NMS is per class (boxes of different classes never suppress each other).
    """
    head = output[0]  # (4 + C, A); select anchors before transposing anything
    scores_all = head[4:]
    scores = scores_all.max(axis=0)
    keep = np.flatnonzero(scores >= conf_threshold)
    if not keep.size:
        return Detections.empty()
    class_id = scores_all[:, keep].argmax(axis=0)
    scores = scores[keep]
    cx, cy, w, h = head[:4, keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    xyxy -= np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], dtype=xyxy.dtype)
    xyxy /= lb.scale
    ih, iw = image_shape
    np.clip(xyxy, 0, [iw, ih, iw, ih], out=xyxy)
    # Offset boxes by class so one NMS pass never compares boxes of different classes.
    offset = class_id[:, None].astype(xyxy.dtype) * (max(ih, iw) + 1)
    kept = nms(xyxy + offset, scores, iou_threshold)[:max_det]
    return Detections.from_arrays(xyxy[kept], class_id[kept], scores[kept])
