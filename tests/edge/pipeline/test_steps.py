"""The per-field steps, one call at a time, with no thread: the real bundled detector on
rendered fields, a real SQLite store."""

from __future__ import annotations

import sqlite3

import cv2
import pytest

from edge.capture.synthetic import SyntheticSource
from edge.config import Profile, QCConfig, StorageConfig
from edge.core.frame import Frame, Unreadable
from edge.core.labels import FieldStatus
from edge.inference.detector import Detector
from edge.pipeline.qc import DuplicateGuard
from edge.pipeline.steps import (
    FieldContext,
    check_field,
    commit_field,
    read_field,
    render_field,
)
from edge.storage import layout
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return [f for f in SyntheticSource(count=2, seed=3).frames() if isinstance(f, Frame)]


def _session(tmp_path, detector: Detector, qc: QCConfig | None = None,
             storage: StorageConfig | None = None) -> tuple[Store, FieldContext]:
    store = Store.open(tmp_path)
    sid = store.start_session(sample_id="S", operator=None, profile_name="t",
                              profile_json=Profile().model_dump_json(), source="synthetic",
                              model_file=BUNDLED_MODEL.name, model_sha256=detector.sha256,
                              classes=detector.classes, version="0")
    return store, FieldContext(sid, detector.classes, detector.sha256, qc or QCConfig(),
                               storage or StorageConfig(data_dir=tmp_path))


def _detected(job, detector: Detector):
    return detector.detect(detector.prepare(job.item.image)) if job.wants_detector else None


def test_a_good_field_is_counted_stored_and_its_evidence_named_by_the_layout(tmp_path,
                                                                              detector, frames):
    store, ctx = _session(tmp_path, detector)
    job = read_field(frames[0], 1.0, ctx)
    assert job.image_qc is not None and job.image_qc.accepted and job.wants_detector
    check_field(job, _detected(job, detector), ctx, DuplicateGuard(ctx.qc))
    assert job.reasons == [] and {"focus", "cells"} <= set(job.scores)
    rendered = render_field(job, ctx)
    record = rendered.record
    assert record.status is FieldStatus.COUNTED and record.timings_ms["decode"] == 1.0
    assert record.evidence_path == layout.field_image(ctx.session_id, frames[0].index)
    assert [rel for rel, _ in rendered.files] == [record.evidence_path]
    outcome = commit_field(store, rendered, ctx)
    assert outcome.counts == store.field_counts(ctx.session_id)[frames[0].index]
    assert sum(outcome.counts.values()) == len(job.result.detections) > 0
    assert rendered.truth == {c: int(n) for c, n in zip(
        ctx.classes, frames[0].truth.counts(3), strict=True)}
    image = cv2.imread(str(tmp_path / record.evidence_path))
    assert image.shape == frames[0].image.shape


def test_the_same_field_twice_is_rejected_as_a_duplicate_and_not_counted(tmp_path, detector,
                                                                          frames):
    _, ctx = _session(tmp_path, detector)
    guard = DuplicateGuard(ctx.qc)
    first, again = read_field(frames[1], 0.0, ctx), read_field(frames[1], 0.0, ctx)
    check_field(first, _detected(first, detector), ctx, guard)
    check_field(again, _detected(again, detector), ctx, guard)
    assert first.reasons == [] and len(again.reasons) == 1 and "duplicate" in again.reasons[0]
    record = render_field(again, ctx).record
    assert record.status is FieldStatus.REJECTED and record.detections is None
    assert record.reason == again.reasons[0]


def test_quality_control_off_counts_every_readable_field(tmp_path, detector, frames):
    _, ctx = _session(tmp_path, detector, qc=QCConfig(enabled=False),
                          storage=StorageConfig(data_dir=tmp_path, evidence=False))
    job = read_field(frames[0], 0.0, ctx)
    assert job.image_qc is None and job.wants_detector
    check_field(job, _detected(job, detector), ctx, DuplicateGuard(ctx.qc))
    rendered = render_field(job, ctx)
    assert rendered.record.status is FieldStatus.COUNTED and rendered.record.qc is None
    assert rendered.files == [] and rendered.record.evidence_path is None


def test_an_unreadable_field_is_skipped_without_the_detector(tmp_path, detector):
    store, ctx = _session(tmp_path, detector)
    job = read_field(Unreadable(4, "bad.jpg", "not an image"), 0.5, ctx)
    assert not job.wants_detector
    check_field(job, None, ctx, DuplicateGuard(ctx.qc))
    rendered = render_field(job, ctx)
    assert rendered.record.status is FieldStatus.SKIPPED and rendered.files == []
    outcome = commit_field(store, rendered, ctx)
    assert (outcome.status, outcome.reason, outcome.counts) == (FieldStatus.SKIPPED,
                                                                "not an image", None)


def test_a_field_that_cannot_be_stored_leaves_no_evidence_file(tmp_path, detector, frames):
    store, ctx = _session(tmp_path, detector, qc=QCConfig(enabled=False))
    job = read_field(frames[0], 0.0, ctx)
    check_field(job, _detected(job, detector), ctx, DuplicateGuard(ctx.qc))
    rendered = render_field(job, ctx)
    commit_field(store, rendered, ctx)
    (tmp_path / rendered.record.evidence_path).unlink()
    with pytest.raises(sqlite3.IntegrityError):  # the same field index twice
        commit_field(store, rendered, ctx)
    assert not (tmp_path / rendered.record.evidence_path).exists()
    assert not list((tmp_path / layout.evidence_dir(ctx.session_id)).iterdir())
