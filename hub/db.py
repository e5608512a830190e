"""The hub's store: enrolled devices and received payloads, in SQLite or PostgreSQL.

Payloads have a primary key on (device_id, payload_key, version), the idempotency key. A
batch is stored in one transaction with INSERT ... ON CONFLICT DO NOTHING, so a retried or
duplicated request, even one racing the original, stores each payload version once.
Device and read tokens are kept as sha256 hashes only. A SQLite hub file (it holds the
bundle keys) is readable by its owner only, whatever the umask.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.core.errors import HemascopeError
from edge.core.files import private_file, utc_now
from edge.sync.client import bundle_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    bundle_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS readers (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS payloads (
    device_id TEXT NOT NULL REFERENCES devices(id),
    payload_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    body {blob} NOT NULL,
    sample_id TEXT,
    status TEXT,
    started_at TEXT,
    fields_counted INTEGER,
    via TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (device_id, payload_key, version)
)
"""



def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Device:
    id: str
    token_sha256: str
    bundle_key: bytes
    revoked_at: str | None

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, token_sha256(token))


@dataclass(frozen=True)
class Reader:
    """Someone (a person, a program) allowed to read what the hub holds, and nothing else."""

    id: str
    token_sha256: str
    revoked_at: str | None

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, token_sha256(token))


@dataclass(frozen=True)
class Incoming:
    """A validated payload version, with the columns the listing shows."""

    key: str
    version: int
    sha256: str
    body: bytes
    sample_id: str
    status: str
    started_at: str
    fields_counted: int


class HubDB:
    """`HubDB("hub.db")` (SQLite file) or `HubDB("postgresql://user@host:port/db")`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith(("postgresql://", "postgres://"))
        if not self.pg:
            self._make_private(Path(url.removeprefix("sqlite:")))
        with self._tx(write=True) as conn:
            for statement in _SCHEMA.format(blob="BYTEA" if self.pg else "BLOB").split(";"):
                conn.execute(statement)

    @staticmethod
    def _make_private(path: Path) -> None:
        """The SQLite file 0600 (SQLite gives its -wal and -shm files the same mode)."""
        try:
            private_file(path)
            for suffix in ("-wal", "-shm", "-journal"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.chmod(0o600)
        except OSError as exc:
            raise HemascopeError(f"cannot open the hub database {path} ({exc.strerror})",
                                 "pass --db a writable file path") from None

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Any]:
        """One transaction on a fresh connection: committed on success, rolled back on error."""
        if self.pg:
            import psycopg

            try:
                conn = psycopg.connect(self.url, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise HemascopeError(f"cannot connect to the hub database ({exc})".splitlines()[0],
                                     "check --db and that PostgreSQL is running") from None
            with conn:
                yield conn
            return
        try:
            conn = sqlite3.connect(Path(self.url.removeprefix("sqlite:")), timeout=30,
                                   isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise HemascopeError(f"cannot open the hub database {self.url} ({exc})",
                                 "pass --db a writable file path") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._tx() as conn:
            cur = conn.execute(self._q(sql), args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def add_device(self, device_id: str, token: str, replace: bool = False) -> None:
        """Enrol a device (or give it a new token with replace=True); only the hash is kept."""
        with self._tx(write=True) as conn:
            exists = conn.execute(self._q("SELECT 1 FROM devices WHERE id = ?"),
                                  (device_id,)).fetchone()
            if exists and not replace:
                raise HemascopeError(f"device {device_id} is already enrolled",
                                     "pass --replace to issue it a new token")
            conn.execute(self._q(
                "INSERT INTO devices (id, token_sha256, bundle_key, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET token_sha256 = excluded.token_sha256,"
                " bundle_key = excluded.bundle_key, created_at = excluded.created_at,"
                " revoked_at = NULL"),
                (device_id, token_sha256(token), bundle_key(token).hex(), utc_now()))

    def revoke_device(self, device_id: str) -> None:
        with self._tx(write=True) as conn:
            cur = conn.execute(self._q("UPDATE devices SET revoked_at = ? WHERE id = ?"),
                               (utc_now(), device_id))
            if cur.rowcount != 1:
                raise HemascopeError(f"no device {device_id}",
                                     "list devices at the hub's / page or /api/v1/devices")

    def device(self, device_id: str) -> Device | None:
        rows = self._rows("SELECT id, token_sha256, bundle_key, revoked_at FROM devices"
                          " WHERE id = ?", (device_id,))
        if not rows:
            return None
        r = rows[0]
        return Device(r["id"], r["token_sha256"], bytes.fromhex(r["bundle_key"]), r["revoked_at"])

    def add_reader(self, reader_id: str, token: str, replace: bool = False) -> None:
        """Allow a reader (or give it a new token with replace=True); only the hash is kept."""
        with self._tx(write=True) as conn:
            exists = conn.execute(self._q("SELECT 1 FROM readers WHERE id = ?"),
                                  (reader_id,)).fetchone()
            if exists and not replace:
                raise HemascopeError(f"reader {reader_id} already has a token",
                                     "pass --replace to issue it a new one")
            conn.execute(self._q(
                "INSERT INTO readers (id, token_sha256, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET token_sha256 = excluded.token_sha256,"
                " created_at = excluded.created_at, revoked_at = NULL"),
                (reader_id, token_sha256(token), utc_now()))

    def revoke_reader(self, reader_id: str) -> None:
        with self._tx(write=True) as conn:
            cur = conn.execute(self._q("UPDATE readers SET revoked_at = ? WHERE id = ?"),
                               (utc_now(), reader_id))
            if cur.rowcount != 1:
                raise HemascopeError(f"no reader {reader_id}",
                                     "check the name given to `hemascope-hub add-reader`")

    def reader(self, reader_id: str) -> Reader | None:
        rows = self._rows("SELECT id, token_sha256, revoked_at FROM readers WHERE id = ?",
                          (reader_id,))
        return Reader(**rows[0]) if rows else None

    def store(self, device_id: str, items: list[Incoming], via: str) -> list[dict[str, Any]]:
        """Store a batch in one transaction; per item 'stored', 'duplicate' or 'conflict'."""
        results = []
        now = utc_now()
        with self._tx(write=True) as conn:
            for it in items:
                cur = conn.execute(self._q(
                    "INSERT INTO payloads (device_id, payload_key, version, sha256, body,"
                    " sample_id, status, started_at, fields_counted, via, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                    (device_id, it.key, it.version, it.sha256, it.body, it.sample_id, it.status,
                     it.started_at, it.fields_counted, via, now))
                if cur.rowcount == 1:
                    status = "stored"
                else:
                    held = conn.execute(self._q(
                        "SELECT sha256 FROM payloads WHERE device_id = ? AND payload_key = ?"
                        " AND version = ?"), (device_id, it.key, it.version)).fetchone()[0]
                    status = "duplicate" if held == it.sha256 else "conflict"
                results.append({"key": it.key, "version": it.version, "sha256": it.sha256,
                                "status": status})
        return results

    def devices(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT d.id, d.created_at, d.revoked_at, COUNT(p.payload_key) AS payloads,"
            " COUNT(DISTINCT p.payload_key) AS sessions, MAX(p.received_at) AS last_received"
            " FROM devices d LEFT JOIN payloads p ON p.device_id = d.id"
            " GROUP BY d.id, d.created_at, d.revoked_at ORDER BY d.id")

    def sessions(self, device_id: str) -> list[dict[str, Any]]:
        """Every payload version received from a device, newest session first."""
        return self._rows(
            "SELECT payload_key AS session_id, version, sha256, sample_id, status, started_at,"
            " fields_counted, via, received_at FROM payloads WHERE device_id = ?"
            " ORDER BY started_at DESC, payload_key, version", (device_id,))

    def body(self, device_id: str, key: str, version: int) -> bytes | None:
        rows = self._rows("SELECT body FROM payloads WHERE device_id = ? AND payload_key = ?"
                          " AND version = ?", (device_id, key, version))
        return bytes(rows[0]["body"]) if rows else None
