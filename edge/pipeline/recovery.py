"""Sessions whose process is gone (SIGKILL, power cut, crash): closed as 'interrupted', queued
for sync, and the files of fields that were never committed removed.

Run at the start of every command that reads or writes sessions. Only a session whose
recorded process no longer runs is touched, so a run going on beside it on the same data dir
is left alone; each session is closed in its own write transaction, after checking it is still
running, so two commands recovering at once close it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge.core.labels import SessionStatus
from edge.core.processes import ProcessId, is_alive
from edge.storage import audit, layout
from edge.storage.space import with_reserve
from edge.storage.store import Store
from edge.sync.payload import outbox

# The image files the runner writes for field NNNNN (`edge.storage.layout`).
_FIELD_FILE = re.compile(r"(\d{5})(?:\.jpg|-cell\d{3}\.png|-field\.png)")


@dataclass(frozen=True)
class Recovery:
    """What one recovery did: the sessions closed and the orphan files removed."""

    sessions: list[str]
    orphan_files: int


def orphan_files(data_dir: Path, session_id: str, stored: set[int]) -> list[Path]:
    """Files of a session no stored field owns: unfinished atomic writes (`.NAME.tmp`) and
    the images of fields whose transaction never committed."""
    folder = data_dir / layout.evidence_dir(session_id)
    if not folder.is_dir():
        return []
    orphans = []
    for path in folder.iterdir():
        name = path.name
        match = _FIELD_FILE.fullmatch(name)
        if (name.startswith(".") and name.endswith(".tmp")) or (
                match is not None and int(match[1]) not in stored):
            orphans.append(path)
    return sorted(orphans)


def recover_sessions(store: Store) -> Recovery:
    """Close every running session whose process is gone: status 'interrupted', ended at its
    last stored activity, payload queued, orphan files removed (all before the commit, so a
    recovery killed half way is done again next time), and a `session.recovered` audit event.
    On a full disk the space reserve is released to make room (`edge.storage.space`)."""
    closed: list[str] = []
    removed = 0
    for session_id, owner in store.running_sessions():
        if owner is not None and is_alive(owner):
            continue
        orphans = with_reserve(store.data_dir, lambda s=session_id, o=owner: _close(store, s, o))
        if orphans is not None:
            removed += orphans
            closed.append(session_id)
    return Recovery(closed, removed)


def _close(store: Store, session_id: str, owner: ProcessId | None) -> int | None:
    """Close one stopped session in one transaction; the orphan files removed, or None when
    another command closed it meanwhile."""
    with store.transaction():
        if store.session(session_id).status is not SessionStatus.RUNNING:
            return None
        orphans = orphan_files(store.data_dir, session_id, store.field_indexes(session_id))
        for path in orphans:
            path.unlink(missing_ok=True)
        ended_at = store.last_activity(session_id)
        store.end_session(session_id, SessionStatus.INTERRUPTED, ended_at)
        outbox(store).enqueue(session_id)
        audit.record(store, "session.recovered", {
            "session": session_id, "ended_at": ended_at,
            "fields": len(store.field_indexes(session_id)), "orphan_files": len(orphans),
            "owner_pid": owner.pid if owner is not None else None})
    return len(orphans)
