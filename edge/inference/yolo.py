"""Detector pre- and post-processing: letterbox, decode of a YOLO head, non-maximum suppression.

Pure functions on numpy arrays, so they are tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.core.detections import Detections


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: scale, then padding (left, top)."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox_tensor(image: np.ndarray, size: tuple[int, int], pad_value: int = 114,
                     out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 image -> the model input: resized keeping aspect ratio, centred on a
    (height, width) canvas of `pad_value`, as a 1x3xHxW RGB float32 tensor in [0, 1]
    (written into `out` when given, which must have that shape and type).

    Written straight into the tensor, one channel at a time, with no padded or float copy of
    the image: this runs for every field, beside the model, on the same cores. The channels
    are split first: converting a contiguous plane is about twice as fast as reading every
    third byte of the interleaved image (0.21 against 0.36 ms for a 640x480 field here).
    """
    if image.ndim != 3 or image.shape[2] != 3:  # a grey plane would leave channels unset
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")
    h, w = image.shape[:2]
    th, tw = size
    scale = min(th / h, tw / w)
    nh, nw = round(h * scale), round(w * scale)
    src = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) \
        else image
    top, left = (th - nh) // 2, (tw - nw) // 2
    if out is not None and (out.shape != (1, 3, th, tw) or out.dtype != np.float32):
        raise ValueError(f"out must be a (1, 3, {th}, {tw}) float32 array, got "
                         f"{out.dtype} {out.shape}")
    tensor = np.empty((1, 3, th, tw), np.float32) if out is None else out
    pad = np.float32(pad_value / 255.0)
    tensor[0, :, :top] = pad
    tensor[0, :, top + nh:] = pad
    tensor[0, :, top:top + nh, :left] = pad
    tensor[0, :, top:top + nh, left + nw:] = pad
    for c, plane in enumerate(reversed(cv2.split(src))):  # tensor RGB, image BGR
        np.multiply(plane, np.float32(1 / 255), casting="unsafe",
                    out=tensor[0, c, top:top + nh, left:left + nw])
    return tensor, Letterbox(scale, float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy NMS, highest score first; scores
    must be positive (a zero score is dropped).

    A box is suppressed when its IoU with a kept, higher-scored box exceeds the threshold
    (OpenCV's implementation: a Python loop cost 0.15 ms on a 90-cell field, this 0.03 ms).
    """
    if not len(boxes):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.astype(np.float64), scores.astype(np.float32), 0.0,
                            iou_threshold)
    return np.asarray(kept, np.int64).ravel()


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
