"""What happens to one field, as plain functions on a typed job (no threads here).

The runner (`edge.pipeline.runner`) calls them from its threads in this order: `read_field`
(reader: pixel checks and the ALL subtype), the detector, `check_field` (cell and duplicate
checks, the WBC differential), `render_field` (the record and its encoded image files), and
`commit_field` (writer: files, then one transaction). Each can be called and tested alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.clinical.stop_rule import FieldResult, Progress
from edge.config import QCConfig, StorageConfig
from edge.core.detections import Detections
from edge.core.errors import DiskFull
from edge.core.files import private_dir, write_bytes_atomic
from edge.core.frame import Frame, Unreadable
from edge.core.labels import NOT_WHITE_CELLS, RBC, FieldStatus
from edge.core.records import FieldRecord
from edge.inference.detector import Detector, Timed
from edge.pipeline.evidence import annotate, encode_image
from edge.pipeline.qc import DuplicateGuard, QCResult, assess_cells, assess_image, fingerprint
from edge.pipeline.scale import detect_at_training_scale
from edge.pipeline.second_stage import FieldClassifiers, FieldLabels, Subtype
from edge.storage import layout
from edge.storage.space import check_free_space, disk_full, is_disk_full
from edge.storage.store import Store


@dataclass(frozen=True)
class FieldContext:
    """What every field of a session shares: where it is stored, with which model, how."""

    session_id: str
    classes: list[str]
    model_sha256: str
    qc: QCConfig
    storage: StorageConfig
    classifiers: FieldClassifiers | None = None
    detector: Detector | None = None  # to detect a field again at the training scale


@dataclass
class FieldJob:
    """One field on its way through the steps; each step fills in its part."""

    item: Frame | Unreadable
    decode_ms: float
    image_qc: QCResult | None = None  # pixel checks (None: quality control is off)
    subtype: Subtype | None = None  # ALL subtype, scored before the detector
    result: Timed | None = None  # the detector's boxes and timings
    reasons: list[str] = field(default_factory=list)  # why it is rejected (empty: counted)
    scores: dict[str, float] = field(default_factory=dict)  # quality scores measured
    labels: FieldLabels | None = None  # the second stage, on a counted field

    @property
    def wants_detector(self) -> bool:
        """A readable field that passed the pixel checks goes to the detector."""
        return isinstance(self.item, Frame) and (self.image_qc is None or self.image_qc.accepted)


@dataclass(frozen=True)
class RenderedField:
    """A field ready to store: its record, its image files (relative path, bytes) and the
    source's exact counts when it knows them (synthetic)."""

    record: FieldRecord
    files: list[tuple[str, bytes]]
    truth: dict[str, int] | None


@dataclass(frozen=True)
class FieldOutcome:
    """What became of a stored field, as the command line shows it."""

    idx: int
    origin: str
    status: FieldStatus
    reason: str | None
    counts: dict[str, int] | None
    timings_ms: dict[str, float]
    truth: dict[str, int] | None = None  # exact counts, when the source knows them (synthetic)
    progress: Progress | None = None  # the session protocol after this field (the runner's)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def counts_by_class(det: Detections | None, classes: list[str]) -> dict[str, int] | None:
    if det is None:
        return None
    return {c: int(n) for c, n in zip(classes, det.counts(len(classes)), strict=True)}


def read_field(item: Frame | Unreadable, decode_ms: float, ctx: FieldContext) -> FieldJob:
    """Check a field's pixels and score its ALL subtype (which needs no detections)."""
    job = FieldJob(item, decode_ms)
    if isinstance(item, Frame):
        if ctx.qc.enabled:
            job.image_qc = assess_image(item.image, ctx.qc)
        if job.wants_detector and ctx.classifiers is not None:
            job.subtype = ctx.classifiers.subtype_of(item.image)
    return job


def check_field(job: FieldJob, result: Timed | None, ctx: FieldContext,
                duplicates: DuplicateGuard) -> None:
    """Take the detector's result, decide whether the field counts (cell and duplicate
    checks, in capture order), and run the WBC differential on a counted field. A field
    whose red cells are far from the detector's training size is detected again at that
    scale first (`edge.pipeline.scale`)."""
    if result is not None and ctx.detector is not None and isinstance(job.item, Frame):
        t0 = time.perf_counter()
        det = detect_at_training_scale(ctx.detector, job.item.image, result.detections)
        if det is not result.detections:
            again = (time.perf_counter() - t0) * 1e3  # counted as inference time
            result = Timed(det, {**result.timings_ms,
                                 "infer": result.timings_ms["infer"] + again})
    job.result = result
    if not isinstance(job.item, Frame) or job.image_qc is None:  # unreadable, or QC off
        job.reasons, job.scores = [], {}
    else:
        job.reasons, job.scores = _verdict(job.item, result, job.image_qc, ctx, duplicates)
    if not job.reasons and ctx.classifiers is not None and result is not None:
        job.labels = ctx.classifiers(job.item.image, result.detections, job.subtype)


def stop_tally(job: FieldJob) -> FieldResult:
    """What the session's stop rule counts of a checked field: whether it is counted (neither
    unreadable nor rejected by quality control) and its classified white cells (the
    differential's denominator: a white-cell box the classifier calls a platelet is not one)."""
    accepted = isinstance(job.item, Frame) and not job.reasons
    white = sum(c.label not in NOT_WHITE_CELLS for c in job.labels.cells) \
        if accepted and job.labels is not None else 0
    return FieldResult(accepted, white)


def _verdict(item: Frame, result: Timed | None, image_qc: QCResult, ctx: FieldContext,
             duplicates: DuplicateGuard) -> tuple[list[str], dict[str, float]]:
    """QC reasons to reject a field (empty: count it) and the scores measured."""
    scores = dict(image_qc.scores)
    if not image_qc.accepted or result is None:
        return list(image_qc.reasons), scores
    rbc = ctx.classes.index(RBC) if RBC in ctx.classes else -1
    cells_qc = assess_cells(result.detections, item.image.shape[:2], ctx.qc, rbc)
    scores.update(cells_qc.scores)
    if not cells_qc.accepted:
        return list(cells_qc.reasons), scores
    duplicate = duplicates.check(fingerprint(item.image))
    return ([duplicate] if duplicate else []), scores


def _png(rgb: np.ndarray) -> bytes:
    return encode_image(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _files(job: FieldJob, frame: Frame, ctx: FieldContext, reason: str | None
           ) -> tuple[str | None, dict[int, tuple[str, float, str | None]] | None,
                      list[tuple[str, bytes]]]:
    """The evidence path, the per-cell labels to store (each with the path of its model
    input) and the encoded files. What each classifier saw is kept as lossless PNG, so that
    `hemascope explain` reproduces the stored scores exactly; only when evidence is on."""
    keep, labels, sid = ctx.storage.evidence, job.labels, ctx.session_id
    files: list[tuple[str, bytes]] = []
    cells: dict[int, tuple[str, float, str | None]] | None = None
    if labels is not None:
        cells = {}
        for c in labels.cells:
            rel = layout.cell_input(sid, frame.index, c.cell) if keep else None
            if rel is not None:
                files.append((rel, _png(c.model_input)))
            cells[c.cell] = (c.label, c.score, rel)
        if keep and labels.subtype_input is not None:
            files.append((layout.field_input(sid, frame.index), _png(labels.subtype_input)))
    evidence = layout.field_image(sid, frame.index) if keep else None
    if evidence is not None:  # the field's last use: drawn on in place, never copied
        detections = job.result.detections if job.result is not None else None
        names = {c.cell: c.label for c in labels.cells} if labels is not None else None
        files.insert(0, (evidence, encode_image(
            ".jpg", annotate(frame.image, detections, ctx.classes, reason, names),
            ctx.storage.jpeg_quality)))
    return evidence, cells, files


def render_field(job: FieldJob, ctx: FieldContext) -> RenderedField:
    """The field's record and encoded image files. An unreadable field is stored as
    'skipped', a field failing quality control as 'rejected' with its reasons (neither is
    counted); the rest as 'counted', with the classifiers' labels when they ran."""
    item = job.item
    if isinstance(item, Unreadable):
        return RenderedField(FieldRecord(
            idx=item.index, origin=item.origin, captured_at=_iso(time.time()),
            status=FieldStatus.SKIPPED, reason=item.reason,
            timings_ms={"decode": job.decode_ms}), [], None)
    counted = not job.reasons
    reason = "; ".join(job.reasons) or None
    timings = {"decode": job.decode_ms, **(job.result.timings_ms if job.result else {})}
    if job.labels is not None:
        timings["classify"] = job.labels.classify_ms
    evidence, cell_labels, files = _files(job, item, ctx, reason)
    h, w = item.image.shape[:2]
    record = FieldRecord(
        idx=item.index, origin=item.origin, captured_at=_iso(item.captured_at),
        status=FieldStatus.COUNTED if counted else FieldStatus.REJECTED, reason=reason,
        width=w, height=h,
        detections=job.result.detections if counted and job.result is not None else None,
        evidence_path=evidence, timings_ms=timings, qc=job.scores or None,
        cell_labels=cell_labels, subtype=job.labels.subtype if job.labels else None)
    return RenderedField(record, files,
                         counts_by_class(item.truth, ctx.classes) if counted else None)


def commit_field(store: Store, field: RenderedField, ctx: FieldContext) -> FieldOutcome:
    """Write the field's image files and commit its record in one transaction; if that
    fails, no file of the field is left behind (a full disk is DiskFull)."""
    check_free_space(store.data_dir, ctx.storage.min_free_mb)
    record = field.record
    written: list[Path] = []
    try:
        for rel, data in field.files:  # folders 0700, files 0600, whatever the umask
            written.append(store.data_dir / rel)
            private_dir(written[-1].parent)
            write_bytes_atomic(written[-1], data, mode=0o600)
        store.add_field(ctx.session_id, ctx.model_sha256, ctx.classes, record)
    except BaseException as exc:
        for path in written:  # no orphan evidence for a field that was not stored
            path.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise disk_full(store.data_dir) from None
        raise
    return FieldOutcome(record.idx, record.origin, record.status, record.reason,
                        counts_by_class(record.detections, ctx.classes),
                        record.timings_ms or {}, field.truth)
