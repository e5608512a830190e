"""The start and finish of a session: its record, and its sync payload queued at the end."""

from __future__ import annotations

from edge import __version__
from edge.config import Profile
from edge.core.labels import SessionStatus
from edge.inference.detector import Detector
from edge.pipeline.second_stage import FieldClassifiers
from edge.storage.store import Store
from edge.sync.payload import outbox


def start_session(store: Store, profile: Profile, source_name: str, detector: Detector,
                  classifiers: FieldClassifiers | None, sample_id: str,
                  operator: str | None) -> str:
    """Record a running session: the profile, source and every model it counts with (the
    detector's digest over model and manifest too)."""
    return store.start_session(
        sample_id=sample_id, operator=operator, profile_name=profile.device.name,
        profile_json=profile.model_dump_json(), source=source_name,
        model_file=detector.model_path.name, model_sha256=detector.sha256,
        model_digest=detector.digest, classes=detector.classes, version=__version__,
        classifiers=classifiers.models() if classifiers is not None else None)


def finish_session(store: Store, session_id: str,
                   status: SessionStatus = SessionStatus.FINISHED) -> None:
    """Set the final status and queue the sync payload in one transaction: both commit, or
    neither, so a finished session without a payload cannot exist."""
    with store.transaction():
        store.end_session(session_id, status)
        outbox(store).enqueue(session_id)
