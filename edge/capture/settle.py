"""Settle detection: one field per stop while the technician moves the stage by hand.

Each frame is shrunk to a small log-grey image with its smooth illumination removed, so lamp
flicker, exposure steps and vignetting (multiplicative, smooth) do not look like motion, and
compared with the previous frame and with the first frame of the current still run. The stage
is moving when either mean absolute difference exceeds the threshold: the first catches fast
moves, the second slow pans whose frame-to-frame change hides in the sensor noise. After
`still_frames` still frames in a row the stop is settled and that frame is taken, unless it
shows the field taken last (a knock or a flicker broke the still run, and the stage settled
back at the same place, or crept less than `min_shift`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import cv2
import numpy as np

from edge.capture.sources import Source
from edge.config import SettleConfig
from edge.core.frame import Frame, Unreadable

FLATTEN_SIGMA = 1 / 16  # illumination blur removed from each frame, as a share of its width
MIN_CORRELATION = 0.5  # aligned views correlating less are different fields


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two prepared frames; infinite if their sizes differ."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size if a.shape == b.shape else float("inf")


class SettleDetector:
    """Frame-difference state machine: `update` is True once per stop, on its settled frame.

    The stream's first stop counts: the slide is at rest when capture starts.
    """

    def __init__(self, config: SettleConfig | None = None) -> None:
        self.config = config or SettleConfig()
        self._previous: np.ndarray | None = None
        self._anchor: np.ndarray | None = None  # first frame of the current still run
        self._taken: np.ndarray | None = None  # the last field taken
        self._still = 0  # length of the current still run

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """Small log-grey image in percent, smooth illumination removed: flicker-proof contrast."""
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        width = self.config.downscale_width
        size = (width, max(1, round(width * grey.shape[0] / grey.shape[1])))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        log = cv2.log(np.maximum(small, 1)) * 100
        return log - cv2.GaussianBlur(log, (0, 0), width * FLATTEN_SIGMA)

    def _new_field(self, view: np.ndarray) -> bool:
        """False if `view` shows the last field taken, moved by less than `min_shift`.

        Phase correlation estimates the shift; the aligned views must then correlate, so a
        false peak (dust on the sensor, which never moves) cannot make two fields look alike.
        """
        taken = self._taken
        if taken is None or taken.shape != view.shape:
            return True
        height, width = view.shape
        window = cv2.createHanningWindow((width, height), cv2.CV_32F)
        # Copies: OpenCV 5.0's phaseCorrelate overwrites its inputs.
        (dx, dy), _ = cv2.phaseCorrelate(taken.copy(), view.copy(), window)
        if np.hypot(dx, dy) >= self.config.min_shift * width:
            return True
        aligned = cv2.warpAffine(taken, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height))
        mx, my = int(abs(dx)) + 2, int(abs(dy)) + 2  # drop the borders warpAffine filled
        overlap = (slice(my, height - my), slice(mx, width - mx))
        match = cv2.matchTemplate(aligned[overlap], view[overlap], cv2.TM_CCOEFF_NORMED)
        return float(match[0, 0]) < MIN_CORRELATION

    def update(self, image: np.ndarray) -> bool:
        """Feed the next BGR (or grey) frame; True if the stage has just settled at a new stop."""
        view = self._prepare(image)
        previous = view if self._previous is None else self._previous
        anchor = view if self._anchor is None else self._anchor
        self._previous = view
        change = max(_difference(view, previous), _difference(view, anchor))
        if change > self.config.motion_threshold:
            self._anchor, self._still = None, 0  # the next still frame anchors the run
            return False
        self._anchor, self._still = anchor, self._still + 1
        if self._still != self.config.still_frames or not self._new_field(view):
            return False
        self._taken = view
        return True


class SettledSource:
    """Wraps a live source and yields one Frame per stop of the stage, re-indexed 0, 1, 2, ...

    A frame keeps its origin (e.g. `video.mp4#153`) and capture time. Unreadable items pass
    through, numbered in the same sequence.
    """

    def __init__(self, inner: Source, config: SettleConfig | None = None) -> None:
        self.inner = inner
        self.config = config or SettleConfig()
        self.name = f"settle({inner.name})"

    def frames(self) -> Iterator[Frame | Unreadable]:
        detector = SettleDetector(self.config)
        index = 0
        for item in self.inner.frames():
            if isinstance(item, Frame) and not detector.update(item.image):
                continue
            yield dataclasses.replace(item, index=index)
            index += 1
