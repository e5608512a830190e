"""The sync outbox: immutable, versioned payloads (opaque bytes) waiting for the clinic hub.

Finishing a session enqueues its payload in the same SQLite transaction
(`edge.pipeline.session.finish_session`), so a finished session without a payload cannot
exist. The payload bytes are made by the caller (`edge.sync.payload`); here they are only
kept, compared and handed out. Rows are never rewritten: a trigger refuses changes to a
payload's bytes, and an amended session gets a new version.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edge.core.files import utc_now
from edge.core.labels import SessionStatus
from edge.storage.store import Store

PayloadFor = Callable[[str, int], bytes]  # (key, version) -> the payload's bytes

_DDL = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        payload_key TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        sha256 TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        confirmed_by TEXT,
        exported_at TEXT,
        UNIQUE (payload_key, version))""",
    """CREATE TRIGGER IF NOT EXISTS outbox_immutable
        BEFORE UPDATE OF payload_key, version, sha256, body ON outbox
        BEGIN SELECT RAISE(ABORT, 'outbox payloads are immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS outbox_keep_unsent
        BEFORE DELETE ON outbox WHEN OLD.state != 'sent'
        BEGIN SELECT RAISE(ABORT, 'an unsent outbox payload cannot be deleted'); END""",
    "CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, id)",
)


@dataclass(frozen=True)
class Item:
    """One payload version as it travels: key, version, sha256 and the exact bytes."""

    id: int
    key: str
    version: int
    sha256: str
    body: bytes


class Outbox:
    """The outbox of a store. `enqueue` runs inside the caller's transaction; every other
    change is its own short transaction."""

    def __init__(self, store: Store, payload: PayloadFor) -> None:
        self.store = store
        self.payload = payload
        if store.conn.in_transaction:  # opened to queue a payload with a session change
            self._ensure_schema()
        else:
            with store.transaction():
                self._ensure_schema()

    def _ensure_schema(self) -> None:
        """Create the outbox and its guards. On a database older than the outbox, every
        session that ended before it existed is enqueued too, so an upgraded device syncs its
        history once."""
        conn = self.store.conn
        existed = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
        for statement in _DDL:
            conn.execute(statement)
        if not existed:
            for row in conn.execute("SELECT id FROM sessions WHERE status != ?"
                                    " ORDER BY started_at", (SessionStatus.RUNNING,)).fetchall():
                self.enqueue(row["id"])

    def enqueue(self, key: str) -> int | None:
        """Add the payload of `key` as its next version; None if the latest version's bytes
        are the same. Call it inside the transaction that changes what the payload shows."""
        conn = self.store.conn
        latest = conn.execute("SELECT version, body FROM outbox WHERE payload_key = ?"
                              " ORDER BY version DESC LIMIT 1", (key,)).fetchone()
        if latest is not None and self.payload(key, latest["version"]) == latest["body"]:
            return None
        version = 1 if latest is None else latest["version"] + 1
        body = self.payload(key, version)
        conn.execute("INSERT INTO outbox (payload_key, version, sha256, body, created_at)"
                     " VALUES (?, ?, ?, ?, ?)",
                     (key, version, hashlib.sha256(body).hexdigest(), body, utc_now()))
        return version

    def _item(self, row_id: int) -> Item:
        r = self.store.conn.execute("SELECT id, payload_key, version, sha256, body FROM outbox"
                                    " WHERE id = ?", (row_id,)).fetchone()
        return Item(r["id"], r["payload_key"], r["version"], r["sha256"], r["body"])

    def pending(self) -> Iterator[Item]:
        """Every pending payload, oldest first, read one at a time."""
        for row in self.store.conn.execute(
                "SELECT id FROM outbox WHERE state = 'pending' ORDER BY id").fetchall():
            yield self._item(row["id"])

    def batch(self, max_items: int, max_bytes: int) -> list[Item]:
        """The oldest pending payloads, at most max_items and max_bytes (at least one)."""
        out: list[Item] = []
        size = 0
        for row in self.store.conn.execute(
                "SELECT id, length(body) AS n FROM outbox WHERE state = 'pending' ORDER BY id"):
            if out and (len(out) >= max_items or size + row["n"] > max_bytes):
                break
            out.append(self._item(row["id"]))
            size += row["n"]
        return out

    def begin_attempt(self, items: list[Item], at: str) -> None:
        """Count an upload attempt before it starts, so a killed process still leaves a trace."""
        with self.store.transaction() as conn:
            conn.executemany("UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?"
                             " WHERE id = ?", [(at, i.id) for i in items])

    def note_error(self, items: list[Item], reason: str) -> None:
        """Record why an attempt failed; the payloads stay pending."""
        with self.store.transaction() as conn:
            conn.executemany("UPDATE outbox SET last_error = ? WHERE id = ? AND state = 'pending'",
                             [(reason, i.id) for i in items])

    def mark_sent(self, confirmed: list[tuple[str, int, str]], at: str, by: str) -> int:
        """Mark (key, version, sha256) as held by the hub; only matching bytes count (in the
        caller's transaction, if any: with its audit event)."""
        with self.store.writing() as conn:
            return sum(conn.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, confirmed_by = ?, last_error = NULL"
                " WHERE payload_key = ? AND version = ? AND sha256 = ? AND state != 'sent'",
                (at, by, key, version, sha)).rowcount for key, version, sha in confirmed)

    def mark_failed(self, failures: list[tuple[Item, str]]) -> None:
        """The hub refused these payloads for good: keep them, with the hub's reason."""
        with self.store.transaction() as conn:
            conn.executemany("UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ?",
                             [(reason, item.id) for item, reason in failures])

    def mark_exported(self, ids: list[int], at: str) -> None:
        """Note the payloads written to a USB bundle (in the caller's transaction, if any)."""
        with self.store.writing() as conn:
            conn.executemany("UPDATE outbox SET exported_at = ? WHERE id = ?",
                             [(at, i) for i in ids])

    def retry_failed(self) -> int:
        """Put failed payloads back in the queue (after the hub or its rules were fixed)."""
        with self.store.transaction() as conn:
            return conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'failed'"
                                ).rowcount

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "sent": 0, "failed": 0}
        for row in self.store.conn.execute(
                "SELECT state, COUNT(*) AS n FROM outbox GROUP BY state"):
            out[row["state"]] = row["n"]
        out["exported_unconfirmed"] = self.store.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE state != 'sent' AND exported_at IS NOT NULL"
        ).fetchone()[0]
        return out

    def problems(self, limit: int = 20) -> list[sqlite3.Row]:
        """Failed payloads, then pending ones whose last attempt failed, with reasons."""
        return self.store.conn.execute(
            "SELECT payload_key, version, state, attempts, last_attempt_at, last_error FROM outbox"
            " WHERE state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL)"
            " ORDER BY state = 'pending', id LIMIT ?", (limit,)).fetchall()

    def last_sent_at(self) -> str | None:
        return self.store.conn.execute("SELECT MAX(sent_at) FROM outbox").fetchone()[0]
