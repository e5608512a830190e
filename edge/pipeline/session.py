"""The start and finish of a session: its record and audit events, and its sync payload
queued at the end.

Sample and operator ids are stored as their pseudonyms unless the profile keeps them in
clear (`privacy.keep_clear_ids`); the payload carries pseudonyms either way.
"""

from __future__ import annotations

from edge import __version__
from edge.config import Profile
from edge.core.labels import SessionStatus
from edge.inference.detector import Detector
from edge.pipeline.second_stage import FieldClassifiers
from edge.storage import audit
from edge.storage.pseudonyms import device_secret, pseudonym
from edge.storage.store import Store
from edge.sync.payload import outbox


def stored_ids(store: Store, profile: Profile, sample_id: str, operator: str | None
               ) -> tuple[str, str | None]:
    """The sample and operator ids as this profile stores them: clear or pseudonyms."""
    if profile.privacy.keep_clear_ids:
        return sample_id, operator
    secret = device_secret(store.data_dir)
    return (pseudonym(secret, "sample", sample_id),
            None if operator is None else pseudonym(secret, "operator", operator))


def start_session(store: Store, profile: Profile, source_name: str, detector: Detector,
                  classifiers: FieldClassifiers | None, sample_id: str,
                  operator: str | None) -> str:
    """Record a running session (the profile, source and every model it counts with, the
    detector's digest over model and manifest) and, in the same transaction, its audit
    events: the profile when it changed, the start, and each model loaded with its digest."""
    models = classifiers.models() if classifiers is not None else []
    with store.transaction():  # a full disk met here (even by a new device secret): no session
        sample_id, operator = stored_ids(store, profile, sample_id, operator)
        session_id = store.start_session(
            sample_id=sample_id, operator=operator, profile_name=profile.device.name,
            profile_json=profile.model_dump_json(), source=source_name,
            model_file=detector.model_path.name, model_sha256=detector.sha256,
            model_digest=detector.digest, classes=detector.classes, version=__version__,
            classifiers=models if classifiers is not None else None)
        audit.note_profile(store, profile.device.name, profile.model_dump(mode="json"))
        audit.record(store, "session.start", {
            "session": session_id, "source": source_name.split(":", 1)[0],
            "profile": profile.device.name, "version": __version__})
        loaded = [{"role": "detector", "file": detector.model_path.name,
                   "sha256": detector.sha256, "digest": detector.digest,
                   "signed_by": detector.signer},
                  *({"role": m["role"], "file": m["file"], "sha256": m["sha256"],
                     "digest": m["digest"], "signed_by": m.get("signed_by")} for m in models)]
        for model in loaded:
            audit.record(store, "model.loaded", {"session": session_id, **model})
    return session_id


def finish_session(store: Store, session_id: str,
                   status: SessionStatus = SessionStatus.FINISHED) -> None:
    """Set the final status, queue the sync payload and record the stop in one transaction:
    all commit, or none, so a finished session without a payload cannot exist."""
    with store.transaction():
        store.end_session(session_id, status)
        outbox(store).enqueue(session_id)
        audit.record(store, "session.stop", {
            "session": session_id, "status": str(status),
            "fields": len(store.field_indexes(session_id))})
