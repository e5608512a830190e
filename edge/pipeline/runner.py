"""The device runner: fields from a source -> detector -> one stored transaction per field."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2

from edge import __version__
from edge.capture.sources import Source
from edge.config import Profile
from edge.core.detections import Detections
from edge.core.errors import HemascopeError
from edge.core.frame import Frame, Unreadable
from edge.inference.detector import Detector, Prepared, Timed
from edge.pipeline import telemetry
from edge.pipeline.evidence import annotate, encode_image, write_bytes_atomic
from edge.pipeline.qc import DuplicateGuard, QCResult, assess_cells, assess_image, fingerprint
from edge.pipeline.second_stage import FieldClassifiers, FieldLabels
from edge.storage.store import FieldRecord, Store


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

    Three threads share the work of a field, and with onnxruntime the detector works on two
    fields at once. A reader thread decodes the next field, checks its pixels and scores its
    ALL subtype (which needs no detections); the calling thread letterboxes it and starts the
    detector on it, then takes the oldest field in the detector: its cell and duplicate checks
    and, on a counted field, the WBC differential of every white cell, then draws and encodes
    the evidence; a writer thread writes the files and commits the field. Fields are checked
    and stored in capture order.

    The reader reads one field per request, sent when a field leaves the detector. With
    `backend.fields_in_flight` = 2 (the default; one intra-op thread each on two cores), the
    reader, the checks and the writer work beside the one field still in the detector, and
    the cores stay busy: on two cores a field took about 1.1x the model's time for one frame
    against 1.16x-1.19x with one field (docs/benchmarks.md). With 1 the runner works in lock step
    with a detector that fills every core: the next field is read, and this one finished,
    between two inferences, never during one (a core taken from the model stalls its
    threads), and the calling thread runs the detector itself.
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

        If the run stops early (error, Ctrl-C, camera gone), every field finished before the
        stop is still stored (only the fields in hand at that moment, in the detector or being
        read, are dropped, never half stored), the session is marked 'interrupted' and the
        error is raised.
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
        requests: queue.Queue = queue.Queue()
        prepared, finished = _Pipe(stop), _Pipe(stop)
        errors: list[BaseException] = []
        duplicates = DuplicateGuard(self.profile.qc)  # used by the main thread, in field order

        def read() -> None:
            """Decode, check and score (ALL subtype) one field per request."""
            try:
                frames = iter(source.frames())
                while requests.get() is not _END:
                    t0 = time.perf_counter()
                    item = next(frames, _END)
                    if item is _END:
                        break
                    decode_ms = (time.perf_counter() - t0) * 1e3
                    image_qc = subtype = None
                    if isinstance(item, Frame):
                        if self.profile.qc.enabled:
                            image_qc = assess_image(item.image, self.profile.qc)
                        if (image_qc is None or image_qc.accepted) \
                                and self.classifiers is not None:
                            subtype = self.classifiers.subtype_of(item.image)
                    if not prepared.put((item, decode_ms, image_qc, subtype)):
                        return
            except BaseException as exc:  # handed to the main thread, raised there
                prepared.put(exc)
            prepared.put(_END)

        written = threading.Event()  # the writer has stored its last field

        def write() -> None:
            try:
                while (job := finished.get()) is not _END:
                    outcome = self._commit(session_id, *job)
                    if on_field is not None:
                        on_field(session_id, outcome)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
            finally:
                written.set()

        in_flight = self.profile.backend.fields_in_flight or 1
        pool = ThreadPoolExecutor(in_flight, "hemascope-detector") if in_flight > 1 else None
        pending: deque[tuple[tuple, Future | None]] = deque()  # fields in the detector, in order
        # One model input per field in flight, reused in turn: the oldest is free again by the
        # time it comes round (the loop below keeps at most in_flight - 1 fields pending while
        # it prepares the next). A new 5 MB array per field left the memory fragmented.
        inputs = deque(self.detector.input_buffer() for _ in range(in_flight))

        def start(prepared: Prepared) -> Future:
            """The detector on a field: in the pool, or at once here with one field in flight."""
            if pool is not None:
                return pool.submit(self.detector.detect, prepared)
            done: Future = Future()
            done.set_result(self.detector.detect(prepared))
            return done

        def finish_oldest() -> bool:
            """Wait for the oldest field's boxes, check and classify it, hand it to the writer."""
            (item, decode_ms, image_qc, subtype), inference = pending.popleft()
            result = inference.result() if inference is not None else None
            requests.put(True)  # the next field is read while this one is finished here
            verdict = labels = None
            if isinstance(item, Frame):
                verdict = self._verdict(item, result, image_qc, duplicates)
                if not verdict[0] and self.classifiers is not None and result is not None:
                    labels = self.classifiers(item.image, result.detections, subtype)
            return finished.put(self._finish(session_id, item, result, decode_ms, verdict,
                                             labels))

        reader = threading.Thread(target=read, name="hemascope-reader", daemon=True)
        writer = threading.Thread(target=write, name="hemascope-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            for _ in range(in_flight):
                requests.put(True)
            while (job := prepared.get()) is not _END and not isinstance(job, BaseException):
                item, _, image_qc, _ = job
                inference = None
                if isinstance(item, Frame) and (image_qc is None or image_qc.accepted):
                    inputs.rotate()
                    inference = start(self.detector.prepare(item.image, inputs[0]))
                pending.append((job, inference))
                if len(pending) == in_flight and not finish_oldest():
                    break
            else:  # the source ended or failed (camera gone): store what it gave, then stop
                if isinstance(job, BaseException):
                    errors.append(job)
                while pending and finish_oldest():
                    pass
        finally:
            # The writer stores every field finished so far, then stops; the session is never
            # finished while it still writes, nor while the detector still works on a field
            # (which is dropped, never half stored), even through a second Ctrl-C (which only
            # stops the wait for room in the queue: what is queued is stored). An Event, not
            # Thread.join: a join interrupted by Ctrl-C can report a running thread as ended.
            while True:
                try:
                    requests.put(_END)  # the reader stops after the read in hand, if any
                    finished.put(_END)
                    written.wait()
                    if pool is not None:
                        pool.shutdown(cancel_futures=True)
                    break
                except KeyboardInterrupt:
                    stop.set()
            writer.join()
            stop.set()
            reader.join(timeout=5)
        if errors:
            raise errors[0]

    def _render(self, session_id: str, item: Frame, reason: str | None,
                detections: Detections | None, labels: FieldLabels | None
                ) -> tuple[str | None, dict[int, tuple[str, float, str | None]] | None,
                           list[tuple[str, bytes]]]:
        """Encode the field's image files: returns the evidence path, the per-cell labels to
        store (each with the path of its model input) and the files as (path, bytes).

        What each classifier saw is kept as lossless PNG, so that `hemascope explain`
        reproduces the stored scores exactly; only when evidence is on.
        """
        keep = self.profile.storage.evidence
        files: list[tuple[str, bytes]] = []
        evidence_rel = None
        if keep:
            evidence_rel = f"evidence/{session_id}/{item.index:05d}.jpg"
            names = {c.cell: c.label for c in labels.cells} if labels is not None else None
            files.append((evidence_rel, encode_image(
                ".jpg", annotate(item.image, detections, self.detector.classes, reason, names),
                self.profile.storage.jpeg_quality)))
        if labels is None:
            return evidence_rel, None, files
        cells: dict[int, tuple[str, float, str | None]] = {}
        for c in labels.cells:
            rel = f"evidence/{session_id}/{item.index:05d}-cell{c.cell:03d}.png" if keep else None
            if rel is not None:
                files.append((rel, encode_image(".png", cv2.cvtColor(c.model_input,
                                                                     cv2.COLOR_RGB2BGR))))
            cells[c.cell] = (c.label, c.score, rel)
        if keep and labels.subtype_input is not None:
            files.append((f"evidence/{session_id}/{item.index:05d}-field.png",
                          encode_image(".png", cv2.cvtColor(labels.subtype_input,
                                                            cv2.COLOR_RGB2BGR))))
        return evidence_rel, cells, files

    def _check_free_space(self) -> None:
        free_mb = shutil.disk_usage(self.store.data_dir).free / 2**20
        if free_mb < self.profile.storage.min_free_mb:
            raise HemascopeError(
                f"only {free_mb:.0f} MB free in {self.store.data_dir} "
                f"(minimum {self.profile.storage.min_free_mb} MB)",
                "free space or sync and archive old sessions; stored fields are safe",
            )

    def _verdict(self, item: Frame, result: Timed | None, image_qc: QCResult | None,
                 duplicates: DuplicateGuard) -> tuple[list[str], dict[str, float]]:
        """QC reasons to reject a field (empty: count it) and the scores measured."""
        if image_qc is None:  # quality control is off
            return [], {}
        scores = dict(image_qc.scores)
        if not image_qc.accepted or result is None:
            return list(image_qc.reasons), scores
        cells_qc = assess_cells(result.detections, item.image.shape[:2], self.profile.qc)
        scores.update(cells_qc.scores)
        if not cells_qc.accepted:
            return list(cells_qc.reasons), scores
        duplicate = duplicates.check(fingerprint(item.image))
        return ([duplicate] if duplicate else []), scores

    def _finish(self, session_id: str, item: Frame | Unreadable, result: Timed | None,
                decode_ms: float, verdict: tuple[list[str], dict[str, float]] | None,
                labels: FieldLabels | None
                ) -> tuple[FieldRecord, list[tuple[str, bytes]], dict[str, int] | None]:
        """The field's record and encoded image files, given its quality verdict, and the
        source's exact counts when it knows them.

        An unreadable field is stored as 'skipped', a field failing quality control as
        'rejected' with its reasons (neither is counted); the rest as 'counted', with the
        classifiers' labels when they ran.
        """
        if isinstance(item, Unreadable):
            return FieldRecord(idx=item.index, origin=item.origin,
                               captured_at=_iso(time.time()), status="skipped",
                               reason=item.reason, timings_ms={"decode": decode_ms}), [], None
        reasons, scores = verdict or ([], {})
        status = "rejected" if reasons else "counted"
        reason = "; ".join(reasons) or None
        detections = result.detections if result is not None else None
        timings = {"decode": decode_ms, **(result.timings_ms if result is not None else {})}
        if labels is not None:
            timings["classify"] = labels.classify_ms
        evidence_rel, cell_labels, files = self._render(session_id, item, reason, detections,
                                                        labels)
        h, w = item.image.shape[:2]
        record = FieldRecord(idx=item.index, origin=item.origin,
                             captured_at=_iso(item.captured_at), status=status, reason=reason,
                             width=w, height=h,
                             detections=detections if status == "counted" else None,
                             evidence_path=evidence_rel, timings_ms=timings,
                             qc=scores or None, cell_labels=cell_labels,
                             subtype=labels.subtype if labels is not None else None)
        return record, files, self._by_class(item.truth) if status == "counted" else None

    def _by_class(self, det: Detections | None) -> dict[str, int] | None:
        if det is None:
            return None
        classes = self.detector.classes
        return {c: int(n) for c, n in zip(classes, det.counts(len(classes)), strict=True)}

    def _commit(self, session_id: str, record: FieldRecord, files: list[tuple[str, bytes]],
                truth: dict[str, int] | None) -> FieldOutcome:
        """Write the field's image files and commit its record in one transaction; if that
        fails, no file of the field is left behind."""
        self._check_free_space()
        written: list[Path] = []
        try:
            for rel, data in files:
                written.append(self.store.data_dir / rel)
                write_bytes_atomic(written[-1], data)
            self.store.add_field(session_id, self.detector.sha256, self.detector.classes,
                                 record)
        except BaseException:
            for path in written:  # no orphan evidence for a field that was not stored
                path.unlink(missing_ok=True)
            raise
        return FieldOutcome(record.idx, record.origin, record.status, record.reason,
                            self._by_class(record.detections), record.timings_ms or {}, truth)
