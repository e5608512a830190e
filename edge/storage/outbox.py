"""The sync outbox: immutable, versioned session payloads waiting for the clinic hub.

Finishing a session enqueues its payload in the same SQLite transaction (see
`Store.finish_session`), so a finished session without a payload cannot exist. A payload is
canonical JSON (sorted keys, fixed separators, ASCII), so the device and the hub can prove
they hold the same bytes by sha256. Rows are never rewritten: a trigger refuses changes to
a payload's bytes, and an amended session gets a new version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.config import SyncConfig
from edge.report.summary import session_summary
from edge.storage.store import Store, utc_now

PAYLOAD_SCHEMA = "hemascope.session.v1"

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


def ensure_schema(store: Store) -> None:
    """Create the outbox and its guards (call inside a transaction).

    On a database older than the outbox, every session that ended before it existed is
    enqueued too, so an upgraded device syncs its history once.
    """
    existed = store.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    for statement in _DDL:
        store.conn.execute(statement)
    if not existed:
        for row in store.conn.execute("SELECT id FROM sessions WHERE status != 'running'"
                                      " ORDER BY started_at").fetchall():
            enqueue(store, row["id"])


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a payload: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _evidence(store: Store, summary: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any] | None:
    """Evidence JPEGs (base64) up to the session profile's sync.evidence_max_kb, or None."""
    defaults = SyncConfig()
    if not sync.get("evidence", defaults.evidence):
        return None
    cap = int(sync.get("evidence_max_kb", defaults.evidence_max_kb)) * 1024
    images: dict[str, str] = {}
    omitted: list[str] = []
    used = 0
    for field in summary["fields"]:
        rel = field["evidence"]
        if rel is None:
            continue
        try:
            data = (store.data_dir / rel).read_bytes()
        except OSError:
            omitted.append(rel)
            continue
        if used + len(data) > cap:
            omitted.append(rel)
            continue
        used += len(data)
        images[rel] = base64.b64encode(data).decode("ascii")
    return {"max_kb": cap // 1024, "images": images, "omitted": omitted}


def build_payload(store: Store, session_id: str, version: int) -> dict[str, Any]:
    """Everything the hub keeps about a session: summary, fields with cells (and the WBC
    differential's label of each classified cell), every model digest involved."""
    session = store.session(session_id)
    summary = session_summary(store, session_id)
    profile = json.loads(session["profile_json"])
    fields = []
    digests = {session["model_sha256"], *(c["sha256"] for c in summary["classifiers"])}
    for f in store.fields(session_id):
        digests.add(f["model_sha256"])
        rows = store.conn.execute("SELECT * FROM cells WHERE field_id = ? ORDER BY id",
                                  (f["id"],)).fetchall()
        field: dict[str, Any] = {
            "idx": f["idx"], "captured_at": f["captured_at"], "width": f["width"],
            "height": f["height"], "model_sha256": f["model_sha256"],
            "cells": [[c["class_name"], round(c["confidence"], 5), round(c["x1"], 2),
                       round(c["y1"], 2), round(c["x2"], 2), round(c["y2"], 2)] for c in rows],
            "timings_ms": {k: f[f"{k}_ms"] for k in ("decode", "preprocess", "infer",
                                                     "postprocess")},
        }
        labels = [[i, c["label"], round(c["label_score"], 5)]
                  for i, c in enumerate(rows) if c["label"] is not None]
        if labels:  # [index in cells, class, score]; absent when no cell was classified
            field["labels"] = labels
        fields.append(field)
    return {
        "schema": PAYLOAD_SCHEMA, "key": session["id"], "version": version,
        "summary": summary, "profile": profile, "model_digests": sorted(digests),
        "fields": fields, "evidence": _evidence(store, summary, profile.get("sync") or {}),
    }


def enqueue(store: Store, session_id: str) -> int | None:
    """Add the session's payload as its next version; None if the latest version is identical.

    Call it inside the transaction that changes the session, so both commit or neither.
    """
    conn = store.conn
    ensure_schema(store)
    latest = conn.execute("SELECT version, body FROM outbox WHERE payload_key = ?"
                          " ORDER BY version DESC LIMIT 1", (session_id,)).fetchone()
    if latest is not None and canonical_json(
            build_payload(store, session_id, latest["version"])) == latest["body"]:
        return None
    version = 1 if latest is None else latest["version"] + 1
    body = canonical_json(build_payload(store, session_id, version))
    conn.execute("INSERT INTO outbox (payload_key, version, sha256, body, created_at)"
                 " VALUES (?, ?, ?, ?, ?)",
                 (session_id, version, hashlib.sha256(body).hexdigest(), body, utc_now()))
    return version


@dataclass(frozen=True)
class Item:
    """One payload version as it travels: key, version, sha256 and the exact bytes."""

    id: int
    key: str
    version: int
    sha256: str
    body: bytes


class Outbox:
    """Reads and state changes of the outbox; each change is its own short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction():
            ensure_schema(store)

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
        """Mark (key, version, sha256) as held by the hub; only matching bytes count."""
        with self.store.transaction() as conn:
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
        with self.store.transaction() as conn:
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
