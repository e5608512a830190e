"""Evidence images: the field as captured, with every detected cell boxed and the counts, and
the exact inputs the classifiers saw."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.core.detections import Detections
from edge.core.files import write_bytes_atomic

# BGR colours per class index: WBC purple, RBC red, platelets teal.
_COLOURS = ((200, 40, 160), (40, 40, 220), (160, 160, 0))


def _banner(image: np.ndarray, text: str, row: int, colour: tuple[int, int, int]) -> None:
    top = 22 * row
    cv2.rectangle(image, (0, top), (12 + 9 * len(text), top + 22), (255, 255, 255), -1)
    cv2.putText(image, text, (6, top + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                cv2.LINE_AA)


def annotate(image: np.ndarray, det: Detections | None, classes: list[str],
             rejected: str | None = None, labels: dict[int, str] | None = None) -> np.ndarray:
    """Boxes and counts drawn on the field itself (no copy: the caller's last use of it),
    each classified white cell named above its box; a rejected field says why, in red."""
    out = image
    if det is not None:
        for i, (box, cid) in enumerate(zip(det.xyxy.astype(int), det.class_id, strict=True)):
            colour = _COLOURS[int(cid) % len(_COLOURS)]
            cv2.rectangle(out, tuple(box[:2]), tuple(box[2:]), colour, 1, cv2.LINE_AA)
            if labels and i in labels:
                cv2.putText(out, labels[i], (int(box[0]), max(10, int(box[1]) - 3)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        counts = det.counts(len(classes))
        _banner(out, "  ".join(f"{name} {int(n)}" for name, n in
                               zip(classes, counts, strict=True)), 0, (0, 0, 0))
    if rejected:
        _banner(out, f"REJECTED: {rejected}", 1, (0, 0, 200))
    return out


def encode_image(suffix: str, image: np.ndarray, jpeg_quality: int = 90) -> bytes:
    """A BGR image as JPEG (lossy, `jpeg_quality`) or PNG (lossless), by `suffix`."""
    if suffix == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    else:  # Up filter + Huffman-only coding: 3x faster than libpng's defaults, no larger
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER,
                  cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY,
                  cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"{suffix} encoding failed")
    return buf.tobytes()


def write_image_atomic(path: Path, image: np.ndarray, jpeg_quality: int = 90) -> None:
    """Encode a BGR image by the file's suffix (.jpg or .png) and write it atomically,
    readable by its owner only (it shows a patient's cells)."""
    write_bytes_atomic(path, encode_image(path.suffix, image, jpeg_quality), mode=0o600)
