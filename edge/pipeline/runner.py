"""The device runner: fields from a source -> detector -> one stored transaction per field,
until the source ends or the session protocol says stop (`edge.clinical.stop_rule`).

Only threads and queues live here; what happens to a field is `edge.pipeline.steps`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from edge.capture.sources import Source
from edge.clinical.stop_rule import Mode, StopRule
from edge.config import Profile
from edge.core.errors import DiskFull, HemascopeError
from edge.core.labels import SessionStatus
from edge.inference.detector import Detector
from edge.pipeline import telemetry
from edge.pipeline.qc import DuplicateGuard
from edge.pipeline.second_stage import FieldClassifiers
from edge.pipeline.session import finish_session, start_session
from edge.pipeline.stain_check import check_stain
from edge.pipeline.steps import (
    FieldContext,
    FieldJob,
    FieldOutcome,
    check_field,
    commit_field,
    read_field,
    render_field,
    stop_tally,
)
from edge.storage.space import check_room_to_start, release_reserve, with_reserve
from edge.storage.store import Store

OnField = Callable[[str, FieldOutcome], None]

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
        if profile.protocol.mode == Mode.DIFFERENTIAL and (
                self.classifiers is None or self.classifiers.wbc is None):
            raise HemascopeError("a differential protocol needs the white-cell classifier",
                                 "set classifiers.wbc = true, or protocol.mode = 'cbc'")

    def run(self, source: Source, sample_id: str, operator: str | None = None,
            on_field: OnField | None = None) -> str:
        """Process the source as one session, until it ends or the profile's protocol says
        stop (a target or the field limit reached: the fields still in hand are dropped, so
        the session ends at the field that reached it), and return its id. `on_field` gets
        every stored field with the protocol's progress after it.

        Before the session is created, the space reserve is made (`edge.storage.space`) and
        the disk must have `storage.min_free_mb` and `storage.reserve_mb` free beside it, or
        DiskFull is raised and no session exists. If the run stops early (error, Ctrl-C,
        camera gone, a full disk: the reserve is released to make room to close the session),
        every field finished before the stop is still stored (only the fields in hand at that
        moment, in the detector or being read, are dropped, never half stored), the session
        is marked 'interrupted' and the error is raised. SIGTERM and SIGHUP do the same as
        Ctrl-C in the `hemascope` command (`edge.cli.main`); a session whose process was
        killed outright is closed by the next command (`edge.pipeline.recovery`).
        """
        data_dir, storage = self.store.data_dir, self.profile.storage
        check_room_to_start(data_dir, storage.min_free_mb, storage.reserve_mb)  # before anything
        session_id = start_session(self.store, self.profile, source.name, self.detector,
                                   self.classifiers, sample_id, operator)
        status = SessionStatus.INTERRUPTED
        try:  # from here on, a stop (even during the first snapshot) ends the session
            if self.classifiers is not None:
                self.classifiers.new_session()
            self.store.add_telemetry(session_id, telemetry.snapshot())
            ctx = FieldContext(session_id, self.detector.classes, self.detector.sha256,
                               self.profile.qc, self.profile.storage, self.classifiers,
                               self.detector)
            _Flow(self, ctx, source, on_field).run()
            if self.classifiers is not None and self.classifiers.wbc is not None:
                check_stain(self.store, session_id, self.classifiers.wbc)
            status = SessionStatus.FINISHED
        except DiskFull:  # the reserve makes room to close it; a run starts again with room
            release_reserve(data_dir)
            raise
        finally:
            try:
                self.store.add_telemetry(session_id, telemetry.snapshot())
            finally:  # a failed snapshot (a full disk) must not leave the session 'running'
                with_reserve(data_dir, lambda: finish_session(self.store, session_id, status))
        return session_id


class _Flow:
    """The threads and queues of one session: a reader, the calling thread with the
    detector (and its pool), a writer. Fields are checked and stored in capture order."""

    def __init__(self, runner: Runner, ctx: FieldContext, source: Source,
                 on_field: OnField | None) -> None:
        self.ctx, self.source, self.on_field = ctx, source, on_field
        self.store, self.detector = runner.store, runner.detector
        self.rule = StopRule(runner.profile.protocol.stop_protocol())  # in field order
        self.stop = threading.Event()
        self.requests: queue.Queue = queue.Queue()  # one field read per request
        self.prepared, self.finished = _Pipe(self.stop), _Pipe(self.stop)
        self.errors: list[BaseException] = []
        self.written = threading.Event()  # the writer has stored its last field
        self.duplicates = DuplicateGuard(ctx.qc)  # used by the main thread, in field order
        self.in_flight = runner.profile.backend.fields_in_flight or 1
        self.pool = (ThreadPoolExecutor(self.in_flight, "hemascope-detector")
                     if self.in_flight > 1 else None)
        self.pending: deque[tuple[FieldJob, Future | None]] = deque()  # in the detector
        # One model input per field in flight, reused in turn: the oldest is free again by the
        # time it comes round (the loop below keeps at most in_flight - 1 fields pending while
        # it prepares the next). A new 5 MB array per field left the memory fragmented.
        self.inputs = deque(self.detector.input_buffer() for _ in range(self.in_flight))

    def read(self) -> None:
        """Reader thread: decode, check and score (ALL subtype) one field per request."""
        try:
            frames = iter(self.source.frames())
            while self.requests.get() is not _END:
                t0 = time.perf_counter()
                item = next(frames, None)
                if item is None:
                    break
                job = read_field(item, (time.perf_counter() - t0) * 1e3, self.ctx)
                if not self.prepared.put(job):
                    return
        except BaseException as exc:  # handed to the main thread, raised there
            self.prepared.put(exc)
        self.prepared.put(_END)

    def write(self) -> None:
        """Writer thread: files and one transaction per field, in order."""
        try:
            while (item := self.finished.get()) is not _END:
                field, progress = item
                outcome = commit_field(self.store, field, self.ctx)
                if self.on_field is not None:
                    self.on_field(self.ctx.session_id, replace(outcome, progress=progress))
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()
        finally:
            self.written.set()

    def start(self, job: FieldJob) -> Future | None:
        """The detector on a field: in the pool, or at once here with one field in flight."""
        if not job.wants_detector:
            return None
        self.inputs.rotate()
        prepared = self.detector.prepare(job.item.image, self.inputs[0])
        if self.pool is not None:
            return self.pool.submit(self.detector.detect, prepared)
        done: Future = Future()
        done.set_result(self.detector.detect(prepared))
        return done

    def finish_oldest(self) -> bool:
        """Wait for the oldest field's boxes, check and classify it, count it towards the stop
        and hand it to the writer; False when the session must end here."""
        job, inference = self.pending.popleft()
        result = inference.result() if inference is not None else None
        self.requests.put(True)  # the next field is read while this one is finished here
        check_field(job, result, self.ctx, self.duplicates)
        progress = self.rule.add(stop_tally(job))
        return self.finished.put((render_field(job, self.ctx), progress)) and not progress.stop

    def feed(self) -> None:
        """Main loop: start the detector on each field read, finish the oldest when full, until
        the source ends or the stop rule says stop."""
        for _ in range(self.in_flight):
            self.requests.put(True)
        while (job := self.prepared.get()) is not _END and not isinstance(job, BaseException):
            self.pending.append((job, self.start(job)))
            if len(self.pending) == self.in_flight and not self.finish_oldest():
                return
        # the source ended or failed (camera gone): store what it gave, then stop
        if isinstance(job, BaseException):
            self.errors.append(job)
        while self.pending and self.finish_oldest():
            pass

    def run(self) -> None:
        reader = threading.Thread(target=self.read, name="hemascope-reader", daemon=True)
        writer = threading.Thread(target=self.write, name="hemascope-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            self.feed()
        finally:
            self.close(reader, writer)
        if self.errors:
            raise self.errors[0]

    def close(self, reader: threading.Thread, writer: threading.Thread) -> None:
        """The writer stores every field finished so far, then stops; the session is never
        finished while it still writes, nor while the detector still works on a field (which
        is dropped, never half stored), even through a second Ctrl-C (which only stops the
        wait for room in the queue: what is queued is stored). An Event, not Thread.join: a
        join interrupted by Ctrl-C can report a running thread as ended."""
        while True:
            try:
                self.requests.put(_END)  # the reader stops after the read in hand, if any
                self.finished.put(_END)
                self.written.wait()
                if self.pool is not None:
                    self.pool.shutdown(cancel_futures=True)
                break
            except KeyboardInterrupt:
                self.stop.set()
        writer.join()
        self.stop.set()
        reader.join(timeout=5)
