"""The device runner: fields from a source -> detector -> one stored transaction per field."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge import __version__, telemetry
from edge.config import Profile
from edge.detections import Detections
from edge.detector import Detector, Timed
from edge.errors import HemascopeError
from edge.evidence import annotate, write_image_atomic
from edge.field_classifiers import FieldClassifiers, FieldLabels
from edge.frame import Frame, Unreadable
from edge.qc import DuplicateGuard, QCResult, assess_cells, assess_image, fingerprint
from edge.sources import Source
from edge.store import FieldRecord, Store


@dataclass(frozen=True)
class FieldOutcome:
    idx: int
    origin: str
    status: str  # "counted", "rejected" (quality control) or "skipped" (unreadable)
    reason: str | None
    counts: dict[str, int] | None
    timings_ms: dict[str, float]
    truth: dict[str, int] | None = None  # exact counts, when the source knows them (synthetic)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


_END = object()  # marks the end of a pipeline queue


class _Pipe:
    """A bounded queue between two pipeline stages that gives up when the run is stopping."""

    def __init__(self, stop: threading.Event, size: int = 2) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.stop = stop

    def put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> object:
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _END


class Runner:
    """Runs one session: start it, process every field the source yields, finish it.

    Three stages overlap so that the models never wait for the disk: a reader thread decodes,
    checks image quality and letterboxes the next field; the calling thread runs the detector,
    the cell and duplicate checks and, on a counted field, the classifiers (WBC differential
    per white cell, ALL subtype per field), one model at a time so they never compete for the
    cores; a writer thread writes the evidence and commits the field. Fields are stored in
    capture order.
    """

    def __init__(self, profile: Profile, store: Store, detector: Detector,
                 classifiers: FieldClassifiers | None = None) -> None:
        self.profile = profile
        self.store = store
        self.detector = detector
        self.classifiers = classifiers if classifiers is not None and classifiers.enabled \
            else None

    def run(self, source: Source, sample_id: str, operator: str | None = None,
            on_field: Callable[[str, FieldOutcome], None] | None = None) -> str:
        """Process the whole source as one session and return its id.

        If the run stops early (error, Ctrl-C, camera gone), every field captured before the
        stop is still stored, the session is marked 'interrupted' and the error is raised.
        """
        session_id = self.store.start_session(
            sample_id=sample_id, operator=operator, profile_name=self.profile.device.name,
            profile_json=self.profile.model_dump_json(), source=source.name,
            model_file=self.detector.model_path.name, model_sha256=self.detector.sha256,
            classes=self.detector.classes, version=__version__,
            classifiers=self.classifiers.models() if self.classifiers is not None else None,
        )
        if self.classifiers is not None:
            self.classifiers.new_session()
        self.store.add_telemetry(session_id, telemetry.snapshot())
        status = "interrupted"
        try:
            self._pipeline(session_id, source, on_field)
            status = "finished"
        finally:
            try:
                self.store.add_telemetry(session_id, telemetry.snapshot())
            finally:  # a failed snapshot must not leave the session 'running'
                self.store.finish_session(session_id, status)
        return session_id

    def _pipeline(self, session_id: str, source: Source,
                  on_field: Callable[[str, FieldOutcome], None] | None) -> None:
        stop = threading.Event()
        prepared, detected = _Pipe(stop), _Pipe(stop)
        errors: list[BaseException] = []
        duplicates = DuplicateGuard(self.profile.qc)  # used by the main thread, in field order

        def read() -> None:
            try:
                frames = iter(source.frames())
                while True:
                    t0 = time.perf_counter()
                    item = next(frames, _END)
                    if item is _END:
                        break
                    decode_ms = (time.perf_counter() - t0) * 1e3
                    image_qc = prep = fp = None
                    if isinstance(item, Frame):
                        if self.profile.qc.enabled:
                            image_qc = assess_image(item.image, self.profile.qc)
                            if image_qc.accepted:  # for the duplicate check, off the main thread
                                fp = fingerprint(item.image)
                        if image_qc is None or image_qc.accepted:
                            prep = self.detector.prepare(item.image)
                    if not prepared.put((item, prep, decode_ms, image_qc, fp)):
                        return
            except BaseException as exc:  # handed to the main thread, raised there
                prepared.put(exc)
            prepared.put(_END)

        written = threading.Event()  # the writer has stored its last field

        def write() -> None:
            try:
                while (job := detected.get()) is not _END:
                    outcome = self._store(session_id, *job)
                    if on_field is not None:
                        on_field(session_id, outcome)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
            finally:
                written.set()

        reader = threading.Thread(target=read, name="hemascope-reader", daemon=True)
        writer = threading.Thread(target=write, name="hemascope-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            while (job := prepared.get()) is not _END:
                if isinstance(job, BaseException):
                    errors.append(job)
                    break
                item, prep, decode_ms, image_qc, fp = job
                result = self.detector.detect(prep) if prep is not None else None
                verdict = labels = None
                if isinstance(item, Frame):
                    verdict = self._verdict(item, result, image_qc, fp, duplicates)
                    if not verdict[0] and self.classifiers is not None and result is not None:
                        labels = self.classifiers(item.image, result.detections)
                if not detected.put((item, result, decode_ms, verdict, labels)):
                    break
        finally:
            # The writer stores every field detected so far, then stops; the session is never
            # finished while it still writes, even through a second Ctrl-C (which only stops
            # the wait for room in the queue: what is queued is stored). An Event, not
            # Thread.join: a join interrupted by Ctrl-C can report a running thread as ended.
            while True:
                try:
                    detected.put(_END)
                    written.wait()
                    break
                except KeyboardInterrupt:
                    stop.set()
            writer.join()
            stop.set()
            reader.join(timeout=5)
        if errors:
            raise errors[0]

    def _write_field(self, session_id: str, item: Frame, status: str, reason: str | None,
                     detections: Detections | None, timings: dict[str, float],
                     scores: dict[str, float], labels: FieldLabels | None,
                     written: list[Path]) -> FieldRecord:
        """Write the field's image files (listing each in `written`) and build its record."""
        evidence_rel = None
        if self.profile.storage.evidence:
            evidence_rel = f"evidence/{session_id}/{item.index:05d}.jpg"
            names = {c.cell: c.label for c in labels.cells} if labels is not None else None
            written.append(self.store.data_dir / evidence_rel)
            write_image_atomic(written[-1], annotate(item.image, detections,
                                                     self.detector.classes, reason, names),
                               self.profile.storage.jpeg_quality)
        cell_labels = (self._store_model_inputs(session_id, item.index, labels, written)
                       if labels is not None else None)
        h, w = item.image.shape[:2]
        return FieldRecord(idx=item.index, origin=item.origin,
                           captured_at=_iso(item.captured_at), status=status, reason=reason,
                           width=w, height=h,
                           detections=detections if status == "counted" else None,
                           evidence_path=evidence_rel, timings_ms=timings, qc=scores or None,
                           cell_labels=cell_labels,
                           subtype=labels.subtype if labels is not None else None)

    def _store_model_inputs(self, session_id: str, idx: int, labels: FieldLabels,
                            written: list[Path]) -> dict[int, tuple[str, float, str | None]]:
        """Keep what each classifier saw (lossless PNG, so `hemascope explain` reproduces the
        stored scores exactly) when evidence is on; returns the per-cell labels to store."""
        keep = self.profile.storage.evidence
        cells: dict[int, tuple[str, float, str | None]] = {}
        for c in labels.cells:
            rel = f"evidence/{session_id}/{idx:05d}-cell{c.cell:03d}.png" if keep else None
            if rel is not None:
                written.append(self.store.data_dir / rel)
                write_image_atomic(written[-1], cv2.cvtColor(c.model_input, cv2.COLOR_RGB2BGR))
            cells[c.cell] = (c.label, c.score, rel)
        if keep and labels.subtype_input is not None:
            written.append(self.store.data_dir / f"evidence/{session_id}/{idx:05d}-field.png")
            write_image_atomic(written[-1], cv2.cvtColor(labels.subtype_input,
                                                         cv2.COLOR_RGB2BGR))
        return cells

    def _check_free_space(self) -> None:
        free_mb = shutil.disk_usage(self.store.data_dir).free / 2**20
        if free_mb < self.profile.storage.min_free_mb:
            raise HemascopeError(
                f"only {free_mb:.0f} MB free in {self.store.data_dir} "
                f"(minimum {self.profile.storage.min_free_mb} MB)",
                "free space or sync and archive old sessions; stored fields are safe",
            )

    def _verdict(self, item: Frame, result: Timed | None, image_qc: QCResult | None,
                 fp: np.ndarray | None, duplicates: DuplicateGuard
                 ) -> tuple[list[str], dict[str, float]]:
        """QC reasons to reject a field (empty: count it) and the scores measured; `fp` is
        the field's fingerprint when its pixels passed quality control."""
        if image_qc is None:  # quality control is off
            return [], {}
        scores = dict(image_qc.scores)
        if not image_qc.accepted or result is None:
            return list(image_qc.reasons), scores
        cells_qc = assess_cells(result.detections, item.image.shape[:2], self.profile.qc)
        scores.update(cells_qc.scores)
        if not cells_qc.accepted:
            return list(cells_qc.reasons), scores
        duplicate = duplicates.check(fp) if fp is not None else None
        return ([duplicate] if duplicate else []), scores

    def _store(self, session_id: str, item: Frame | Unreadable, result: Timed | None,
               decode_ms: float, verdict: tuple[list[str], dict[str, float]] | None,
               labels: FieldLabels | None) -> FieldOutcome:
        """Write the evidence files and commit one field, given its quality verdict.

        An unreadable field is stored as 'skipped', a field failing quality control as
        'rejected' with its reasons (neither is counted); the rest as 'counted', with the
        classifiers' labels when they ran.
        """
        self._check_free_space()
        classes = self.detector.classes
        if isinstance(item, Unreadable):
            record = FieldRecord(idx=item.index, origin=item.origin, captured_at=_iso(time.time()),
                                 status="skipped", reason=item.reason,
                                 timings_ms={"decode": decode_ms})
            self.store.add_field(session_id, self.detector.sha256, classes, record)
            return FieldOutcome(item.index, item.origin, "skipped", item.reason, None,
                                record.timings_ms)
        reasons, scores = verdict or ([], {})
        status = "rejected" if reasons else "counted"
        reason = "; ".join(reasons) or None
        detections = result.detections if result is not None else None
        timings = {"decode": decode_ms, **(result.timings_ms if result is not None else {})}
        if labels is not None:
            timings["classify"] = labels.classify_ms
        written: list[Path] = []
        try:
            record = self._write_field(session_id, item, status, reason, detections, timings,
                                       scores, labels, written)
            self.store.add_field(session_id, self.detector.sha256, classes, record)
        except BaseException:
            for path in written:  # no orphan evidence for a field that was not stored
                path.unlink(missing_ok=True)
            raise

        def by_class(det: Detections | None) -> dict[str, int] | None:
            if det is None:
                return None
            return {c: int(n) for c, n in zip(classes, det.counts(len(classes)), strict=True)}

        return FieldOutcome(item.index, item.origin, status, reason,
                            by_class(record.detections), timings,
                            by_class(item.truth) if status == "counted" else None)
