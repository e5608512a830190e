"""The audit trail: an append-only, hash-chained log of what happened on this device.

`audit.jsonl` in the data dir holds one event per line, as canonical JSON (sorted keys, no
spaces, ASCII): `seq` (1, 2, ...), `at` (UTC), `kind` (e.g. `session.start`), `details`,
`prev` (the hash of the event before; 64 zeros for the first) and `hash`, the sha256 of the
canonical JSON of the other five. Editing an event changes its hash; deleting one breaks the
sequence and the `prev` link of the next. The database keeps the log's head (seq and hash of
the last event, table `audit_state`), so events cut off the end are seen too.

An event is appended inside a database write transaction, which also serialises appends from
concurrent commands; called inside the transaction of the action it records (a session's
start, stop or recovery, a review import), the line is written before that transaction
commits: a failed commit may leave an event for an action that did not happen, never an
action without its event. A line torn by a power cut (no final newline) was never committed
and is cut off by the next append. When the next append finds the log and the database
disagree (log emptied, truncated or its last event replaced; database replaced), it records
an `audit.mismatch` event and goes on from the log's end, so the evidence stays in the chain.
`verify` reads it all and names the first bad event.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.core.errors import HemascopeError
from edge.core.files import utc_now
from edge.storage import layout
from edge.storage.space import disk_full, is_disk_full
from edge.storage.store import Store

GENESIS = "0" * 64
MISMATCH = "audit.mismatch"
TAIL_BYTES = 64 * 1024  # an event line is far shorter (a few hundred bytes)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(seq: int, at: str, kind: str, details: dict[str, Any], prev: str) -> str:
    """sha256 of the canonical JSON of an event's fields other than its hash."""
    return hashlib.sha256(_canonical({"seq": seq, "at": at, "kind": kind, "details": details,
                                      "prev": prev})).hexdigest()


@dataclass(frozen=True)
class Event:
    seq: int
    at: str
    kind: str
    details: dict[str, Any]
    prev: str
    hash: str

    @classmethod
    def parse(cls, line: bytes) -> Event:
        """An event from its line; ValueError if it is not one (its hash is not checked)."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or set(obj) != {"seq", "at", "kind", "details", "prev",
                                                     "hash"}:
            raise ValueError("not an audit event")
        event = cls(**obj)
        if not (isinstance(event.seq, int) and isinstance(event.details, dict)
                and all(isinstance(v, str) for v in (event.at, event.kind, event.prev,
                                                     event.hash))):
            raise ValueError("not an audit event")
        return event

    def intact(self) -> bool:
        return self.hash == event_hash(self.seq, self.at, self.kind, self.details, self.prev)


def log_path(data_dir: Path) -> Path:
    return data_dir / layout.AUDIT_LOG


# ---- appending ------------------------------------------------------------------------------

def _state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM audit_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO audit_state (key, value) VALUES (?, ?) ON CONFLICT (key)"
                 " DO UPDATE SET value = excluded.value", (key, value))


def _tail(path: Path) -> tuple[Event | None, bool]:
    """(the log's last event or None, whether its end is readable), after cutting off a line
    torn by a power cut (no final newline)."""
    if not path.exists():
        return None, True
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        fh.seek(start)
        chunk = fh.read()
        if chunk and not chunk.endswith(b"\n"):
            cut = chunk.rfind(b"\n")
            if cut < 0 and start > 0:
                return None, False  # a "line" longer than any event: not ours to cut
            fh.truncate(start + cut + 1)
            fh.flush()
            os.fsync(fh.fileno())
            chunk = chunk[:cut + 1]
    lines = chunk.splitlines()
    if not lines:
        return None, start == 0
    try:
        return Event.parse(lines[-1]), True
    except (ValueError, TypeError, RecursionError):
        return None, False


def _mismatch(head: tuple[int, str] | None, last: Event | None, readable: bool) -> str | None:
    """How the log's end disagrees with the head the database recorded, or None."""
    if not readable:
        return "the log's last line is not an audit event"
    if head is None:
        return None if last is None else (f"the database recorded no audit head but the log "
                                          f"ends at seq {last.seq} (database replaced?)")
    if last is None:
        return f"the log is empty but the database recorded seq {head[0]}"
    if last.seq < head[0]:
        return (f"the log ends at seq {last.seq} but the database recorded seq {head[0]}: "
                "events were cut off the end")
    if last.seq == head[0] and last.hash != head[1]:
        return f"event {last.seq} is not the one the database recorded (hash {head[1][:12]}…)"
    return None


def _write(path: Path, prev_seq: int, prev: str, kind: str, details: dict[str, Any]) -> Event:
    seq, at = prev_seq + 1, utc_now()
    event = Event(seq, at, kind, details, prev, event_hash(seq, at, kind, details, prev))
    line = _canonical(asdict(event)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.write(fd, line) < len(line):  # a full disk: the torn line is cut off next time
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)
    finally:
        os.close(fd)
    return event


def record(store: Store, kind: str, details: dict[str, Any]) -> Event:
    """Append one event: inside the caller's open transaction (the action it records), or in
    a transaction of its own. A log that cannot be written is one line."""
    path = log_path(store.data_dir)
    try:
        with store.writing() as conn:
            seq, hash_ = _state(conn, "seq"), _state(conn, "hash")
            head = (int(seq), hash_) if seq is not None and hash_ is not None else None
            last, readable = _tail(path)
            problem = _mismatch(head, last, readable)
            if last is not None:
                prev = (last.seq, last.hash)
            elif not readable and head is not None:
                prev = head
            else:
                prev = (0, GENESIS)
            if problem is not None:
                found = _write(path, *prev, MISMATCH, {
                    "problem": problem, "recorded_head": list(head) if head else None})
                prev = (found.seq, found.hash)
            event = _write(path, *prev, kind, details)
            _set_state(conn, "seq", str(event.seq))
            _set_state(conn, "hash", event.hash)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(store.data_dir) from None
        raise HemascopeError(f"cannot write the audit log {path} ({exc.strerror})",
                             "free space, or fix the permissions of the data dir; nothing "
                             "was stored") from None
    return event


def profile_digest(profile: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(profile)).hexdigest()


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out |= _flatten(value, f"{prefix}.{key}" if prefix else key)
    return out


def note_profile(store: Store, name: str, profile: dict[str, Any]) -> Event | None:
    """Record `profile.changed` when this profile differs from the last one seen (the first
    one seen too), naming the keys that changed; None when it is the same."""
    digest = profile_digest(profile)
    with store.writing() as conn:
        seen = _state(conn, "profile")
        before = json.loads(seen) if seen is not None else None
        if before is not None and profile_digest(before) == digest:
            return None
        old, new = _flatten(before or {}), _flatten(profile)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)) \
            if before is not None else []
        event = record(store, "profile.changed", {
            "name": name, "digest": digest,
            "previous": profile_digest(before) if before is not None else None,
            "changed": changed})
        _set_state(conn, "profile", _canonical(profile).decode())
    return event


# ---- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    events: int  # complete lines read
    last: Event | None
    problems: list[str]  # in log order, each naming its event; empty: intact


def _recorded_head(data_dir: Path) -> tuple[int, str] | None:
    """The head the database recorded, read without changing anything."""
    db = data_dir / layout.DATABASE
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT key, value FROM audit_state WHERE key IN"
                                 " ('seq', 'hash')").fetchall())
    except sqlite3.OperationalError:  # a database from before the audit trail
        return None
    finally:
        conn.close()
    return (int(rows["seq"]), rows["hash"]) if {"seq", "hash"} <= set(rows) else None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each complete line of the log (a last line without its
    newline is an append in progress, or one torn by a power cut: not an event yet)."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.endswith(b"\n"):
                yield number, line


def _check(event: Event, before: Event | None, first: bool) -> str | None:
    """What is wrong with `event` after `before` (None at the start of the log, or after an
    unreadable line when `first` is False), or None."""
    if before is not None or first:
        expected = before.seq + 1 if before is not None else 1
        if event.seq > expected:
            gone = (f"event {expected} was" if event.seq == expected + 1
                    else f"events {expected}-{event.seq - 1} were")
            return f"follows event {expected - 1}: {gone} deleted"
        if event.seq < expected:
            return f"follows event {expected - 1}: out of order (copied or moved)"
        if event.prev != (before.hash if before is not None else GENESIS):
            return f"does not follow event {expected - 1} (an event before it was replaced)"
    if not event.intact():
        return "its content does not match its hash (edited)"
    if event.kind == MISMATCH:
        return f"{event.details.get('problem')} (found when the next event was written)"
    return None


def verify(data_dir: Path) -> Verification:
    """Check every event, its link to the one before and the head the database recorded.
    After a problem the check goes on from the bad event, so later ones are found too."""
    head = _recorded_head(data_dir)  # before the log: a concurrent append only adds to it
    problems: list[str] = []
    last: Event | None = None
    at_head: Event | None = None
    count = 0
    for number, line in _lines(log_path(data_dir)):
        count += 1
        try:
            event = Event.parse(line)
        except (ValueError, TypeError, RecursionError):
            problems.append(f"line {number} is not an audit event (edited?)")
            last = None
            continue
        problem = _check(event, last, first=count == 1)
        if problem is not None:
            problems.append(f"line {number}, event {event.seq} ({event.kind} at {event.at}): "
                            f"{problem}")
        last = event
        if head is not None and event.seq == head[0]:
            at_head = event
    if head is not None and at_head is None:
        problems.append(f"the log ends at event {last.seq if last else 0} but the database "
                        f"recorded event {head[0]}: events were cut off the end")
    elif head is not None and at_head is not None and at_head.hash != head[1]:
        problems.append(f"event {head[0]} is not the one the database recorded (replaced)")
    elif head is None and last is not None:
        problems.append(f"the database recorded no audit head but the log holds {count} "
                        "events (database replaced?)")
    return Verification(count, last, problems)


def recent(data_dir: Path, limit: int = 20, kind: str | None = None) -> list[Event]:
    """The newest `limit` readable events (of `kind` or its family, e.g. `session`), oldest
    first."""
    kept: deque[Event] = deque(maxlen=limit)
    for _, line in _lines(log_path(data_dir)):
        try:
            event = Event.parse(line)
        except (ValueError, TypeError, RecursionError):
            continue
        if kind is None or event.kind == kind or event.kind.startswith(f"{kind}."):
            kept.append(event)
    return list(kept)
