"""The device runner: fields from a source -> detector -> one stored transaction per field."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from edge import __version__
from edge.config import Profile
from edge.detector import Detector
from edge.errors import HemascopeError
from edge.evidence import annotate, write_jpeg_atomic
from edge.frame import Frame, Unreadable
from edge.sources import Source
from edge.store import FieldRecord, Store


@dataclass(frozen=True)
class FieldOutcome:
    idx: int
    origin: str
    status: str  # "counted" or "skipped"
    reason: str | None
    counts: dict[str, int] | None
    timings_ms: dict[str, float]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class Runner:
    """Runs one session: start it, process every field the source yields, finish it."""

    def __init__(self, profile: Profile, store: Store, detector: Detector) -> None:
        self.profile = profile
        self.store = store
        self.detector = detector

    def run(self, source: Source, sample_id: str, operator: str | None = None,
            on_field: Callable[[str, FieldOutcome], None] | None = None) -> str:
        """Process the whole source as one session and return its id.

        If the run stops early (error, Ctrl-C, camera gone), the session is marked
        'interrupted' and every field stored so far is kept.
        """
        session_id = self.store.start_session(
            sample_id=sample_id, operator=operator, profile_name=self.profile.device.name,
            profile_json=self.profile.model_dump_json(), source=source.name,
            model_file=self.detector.model_path.name, model_sha256=self.detector.sha256,
            classes=self.detector.classes, version=__version__,
        )
        status = "interrupted"
        try:
            frames = iter(source.frames())
            while True:
                t0 = time.perf_counter()
                item = next(frames, None)
                if item is None:
                    break
                decode_ms = (time.perf_counter() - t0) * 1e3
                outcome = self.process(session_id, item, decode_ms)
                if on_field is not None:
                    on_field(session_id, outcome)
            status = "finished"
        finally:
            self.store.finish_session(session_id, status)
        return session_id

    def _check_free_space(self) -> None:
        free_mb = shutil.disk_usage(self.store.data_dir).free / 2**20
        if free_mb < self.profile.storage.min_free_mb:
            raise HemascopeError(
                f"only {free_mb:.0f} MB free in {self.store.data_dir} "
                f"(minimum {self.profile.storage.min_free_mb} MB)",
                "free space or sync and archive old sessions; stored fields are safe",
            )

    def process(self, session_id: str, item: Frame | Unreadable, decode_ms: float
                ) -> FieldOutcome:
        """Detect, annotate and store one field (or record why it was skipped)."""
        self._check_free_space()
        classes = self.detector.classes
        if isinstance(item, Unreadable):
            record = FieldRecord(idx=item.index, origin=item.origin, captured_at=_iso(time.time()),
                                 status="skipped", reason=item.reason,
                                 timings_ms={"decode": decode_ms})
            self.store.add_field(session_id, self.detector.sha256, classes, record)
            return FieldOutcome(item.index, item.origin, "skipped", item.reason, None,
                                record.timings_ms)
        result = self.detector(item.image)
        timings = {"decode": decode_ms, **result.timings_ms}
        evidence_rel = None
        evidence_file = None
        if self.profile.storage.evidence:
            evidence_rel = f"evidence/{session_id}/{item.index:05d}.jpg"
            evidence_file = self.store.data_dir / evidence_rel
            write_jpeg_atomic(evidence_file, annotate(item.image, result.detections, classes),
                              self.profile.storage.jpeg_quality)
        h, w = item.image.shape[:2]
        record = FieldRecord(idx=item.index, origin=item.origin,
                             captured_at=_iso(item.captured_at), status="counted", width=w,
                             height=h, detections=result.detections, evidence_path=evidence_rel,
                             timings_ms=timings)
        try:
            self.store.add_field(session_id, self.detector.sha256, classes, record)
        except BaseException:
            if evidence_file is not None:  # no orphan evidence for a field that was not stored
                evidence_file.unlink(missing_ok=True)
            raise
        counts = result.detections.counts(len(classes))
        return FieldOutcome(item.index, item.origin, "counted", None,
                            {c: int(n) for c, n in zip(classes, counts, strict=True)}, timings)
