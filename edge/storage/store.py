"""Local results store: SQLite, one transaction per field, evidence JPEGs beside it.

The data dir is made 0700 and the database 0600, whatever the umask: it holds every result.

A field is either stored whole (its row, its cells and its counts) or not at all. Session
totals are never stored separately: they are sums over the stored fields, so they cannot
disagree with them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.core.errors import DiskFull, HemascopeError
from edge.core.files import private_dir, private_file, utc_now
from edge.core.labels import FieldStatus, SessionStatus
from edge.core.processes import ProcessId, this_process
from edge.core.records import (
    ClassifiedCell,
    FieldRecord,
    FieldReview,
    Review,
    SessionRecord,
    StainCheck,
    StoredCell,
    StoredField,
)
from edge.storage import layout
from edge.storage.space import disk_full, is_disk_full

SCHEMA_VERSION = 3
TIMED_STEPS = ("decode", "preprocess", "infer", "postprocess", "classify")  # *_ms columns


def _in(values: type[SessionStatus] | type[FieldStatus]) -> str:
    """An SQL list of an enum's values: 'a', 'b', 'c'."""
    return ", ".join(f"'{v}'" for v in values)


# Columns added after schema 2 (a v2 database is upgraded in place, nothing is rewritten).
_V3_COLUMNS = (
    ("sessions", "classifiers_json TEXT"),
    ("fields", "subtype_json TEXT"),
    ("fields", "classify_ms REAL"),
    ("cells", "label TEXT"),
    ("cells", "label_score REAL"),
    ("cells", "crop_path TEXT"),
)

# Columns added since schema 3 that older releases ignore: added on open where missing
# (`_add_columns`), without a new schema version, so an older release still opens the database.
# sessions.model_digest: sha256 over the detector file and its manifest (manifest.model_digest).
_ADDED_COLUMNS = (("sessions", "model_digest TEXT"),)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    sample_id TEXT NOT NULL,
    operator TEXT,
    profile_name TEXT NOT NULL,
    profile_json TEXT NOT NULL,
    source TEXT NOT NULL,
    model_file TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_digest TEXT,
    classes_json TEXT NOT NULL,
    classifiers_json TEXT,
    hemascope_version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL CHECK (status IN ({_in(SessionStatus)}))
);
CREATE TABLE IF NOT EXISTS fields (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    idx INTEGER NOT NULL,
    origin TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_in(FieldStatus)})),
    reason TEXT,
    qc_json TEXT,
    width INTEGER,
    height INTEGER,
    model_sha256 TEXT NOT NULL,
    evidence_path TEXT,
    decode_ms REAL, preprocess_ms REAL, infer_ms REAL, postprocess_ms REAL,
    subtype_json TEXT,
    classify_ms REAL,
    UNIQUE (session_id, idx)
);
CREATE TABLE IF NOT EXISTS field_counts (
    field_id INTEGER NOT NULL REFERENCES fields(id),
    class_name TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (field_id, class_name)
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    field_id INTEGER NOT NULL REFERENCES fields(id),
    class_name TEXT NOT NULL,
    confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    label TEXT,
    label_score REAL,
    crop_path TEXT
);
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    at TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fields_session ON fields(session_id);
CREATE INDEX IF NOT EXISTS cells_field ON cells(field_id);
-- A person's verdict on a cell, beside the model's output (never over it); the newest row
-- for a cell is its reviewed label. Created on open: a release without it ignores it.
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    field_idx INTEGER NOT NULL,
    cell INTEGER NOT NULL,
    label TEXT NOT NULL,
    reviewer TEXT,
    reviewed_at TEXT NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_session ON reviews(session_id);
-- A person's verdict on a whole field (rejected with a reason, or restored), beside the
-- model's and quality control's; the newest row for a field counts. Created on open.
CREATE TABLE IF NOT EXISTS field_reviews (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    field_idx INTEGER NOT NULL,
    rejected INTEGER NOT NULL CHECK (rejected IN (0, 1)),
    reason TEXT,
    reviewer TEXT,
    reviewed_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    CHECK (rejected = 0 OR length(trim(reason)) > 0)
);
CREATE INDEX IF NOT EXISTS field_reviews_session ON field_reviews(session_id);
-- The process running a session (pid, and its start time where /proc gives it, so a reused
-- pid is not taken for it): a running session whose process is gone is recovered
-- (`edge.pipeline.recovery`). Created on open: a release without it ignores it.
CREATE TABLE IF NOT EXISTS session_owners (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    pid INTEGER NOT NULL,
    started TEXT
);
-- How unlike the training smears a session's stain was (`edge.inference.stain`), measured
-- at its end. Created on open: a release without it ignores it.
CREATE TABLE IF NOT EXISTS stain_checks (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    cells INTEGER NOT NULL,
    distance REAL NOT NULL,
    reference_distance REAL,
    unfamiliar INTEGER NOT NULL,
    checked_at TEXT NOT NULL
);
-- The audit log's second place (`edge.storage.audit`): the head of audit.jsonl (seq, hash)
-- and the last profile seen. Created on open: a release without it ignores it.
CREATE TABLE IF NOT EXISTS audit_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class DatabaseHealth:
    """A read-only look at the device database (`hemascope doctor`)."""

    path: Path
    integrity: str | None  # "ok" or the first problem SQLite found; None: not checked
    sessions: int
    newest_start: str | None  # started_at of the newest session


def inspect_database(data_dir: Path, integrity: bool = True) -> DatabaseHealth | None:
    """Look at the database without changing it (nothing is created or upgraded), with
    SQLite's integrity check if `integrity`; None if there is none yet. Raises
    sqlite3.DatabaseError when it cannot be read."""
    db = data_dir / layout.DATABASE
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0] if integrity else None
        sessions, newest = conn.execute("SELECT COUNT(*), MAX(started_at) FROM sessions"
                                        ).fetchone()
    finally:
        conn.close()
    return DatabaseHealth(db, verdict, sessions, newest)


def recorded_digests(data_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """{(role, file sha256): (session id, digest)} from the newest session that recorded a
    digest for that model file (role: detector, wbc, all_subtype), read without changing
    the database; {} when there is none."""
    db = data_dir / layout.DATABASE
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, model_sha256, model_digest, classifiers_json FROM"
                            " sessions ORDER BY started_at DESC").fetchall()
    except sqlite3.OperationalError:  # no model_digest column yet: nothing recorded
        return {}
    finally:
        conn.close()
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for session_id, sha256, digest, classifiers in rows:
        models = [("detector", sha256, digest), *((m.get("role"), m.get("sha256"),
                  m.get("digest")) for m in json.loads(classifiers or "[]"))]
        for role, sha, dig in models:
            if dig and (role, sha) not in found:
                found[(role, sha)] = (session_id, dig)
    return found


class Store:
    """The device database. Open it with `Store.open(data_dir)`."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path) -> None:
        self.conn = conn
        self.data_dir = data_dir

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        try:
            private_dir(data_dir)
            probe = data_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            _make_private(data_dir / layout.DATABASE)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(data_dir) from None
            raise HemascopeError(
                f"data dir {data_dir} is not writable ({exc.strerror})",
                "set storage.data_dir in the profile to a writable folder, or fix its permissions",
            ) from None
        # The runner's writer thread stores fields while the main thread runs the model; the
        # connection is used by one thread at a time (start -> writer -> finish).
        conn = sqlite3.connect(data_dir / layout.DATABASE, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        _use_wal(conn)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise HemascopeError(
                f"database {data_dir / layout.DATABASE} has schema {version}, written by a newer "
                f"hemascope (this one reads up to {SCHEMA_VERSION})",
                "upgrade hemascope on this device; the database is untouched")
        if version not in (0, 2, SCHEMA_VERSION):
            conn.close()
            raise HemascopeError(
                f"database {data_dir / layout.DATABASE} has schema {version}, this hemascope "
                f"uses {SCHEMA_VERSION} (a pre-release database)",
                "sync or export it with the hemascope that made it, then move it aside",
            )
        if version == 2:
            _upgrade_from_v2(conn)
        conn.executescript(_SCHEMA)
        _add_columns(conn)
        if version != SCHEMA_VERSION:  # a write: none on a full disk's existing database
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return cls(conn, data_dir)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (nothing half-written). A full
        disk, met by SQLite or by a file written inside, is raised as DiskFull."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # SQLite may already have rolled back (disk full)
                self.conn.execute("ROLLBACK")
            if is_disk_full(exc) and not isinstance(exc, DiskFull):
                raise disk_full(self.data_dir) from None
            raise

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The caller's open transaction, or a new one (`transaction`): a change made with it
        commits together with whatever the caller does in the same transaction."""
        if self.conn.in_transaction:
            yield self.conn
        else:
            with self.transaction() as conn:
                yield conn

    def start_session(self, *, sample_id: str, operator: str | None, profile_name: str,
                      profile_json: str, source: str, model_file: str, model_sha256: str,
                      classes: list[str], version: str,
                      classifiers: list[dict[str, object]] | None = None,
                      model_digest: str | None = None) -> str:
        """Record a running session; `model_digest` covers the detector and its manifest
        (`edge.inference.manifest.model_digest`), `model_sha256` is its file's alone."""
        session_id = uuid.uuid4().hex
        with self.writing() as conn:  # the caller's transaction: with its audit events
            conn.execute(
                "INSERT INTO sessions (id, sample_id, operator, profile_name, profile_json, source,"
                " model_file, model_sha256, model_digest, classes_json, classifiers_json,"
                " hemascope_version, started_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, sample_id, operator, profile_name, profile_json, source, model_file,
                 model_sha256, model_digest, json.dumps(classes), json.dumps(classifiers or []),
                 version, utc_now(), SessionStatus.RUNNING),
            )
            owner = this_process()
            conn.execute("INSERT INTO session_owners (session_id, pid, started) VALUES (?, ?, ?)",
                         (session_id, owner.pid, owner.started))
        return session_id

    def running_sessions(self) -> list[tuple[str, ProcessId | None]]:
        """(id, owning process) of every running session; None for a session started by a
        release that did not record it."""
        return [(row["id"], None if row["pid"] is None else ProcessId(row["pid"], row["started"]))
                for row in self.conn.execute(
                    "SELECT s.id, o.pid, o.started FROM sessions s LEFT JOIN session_owners o"
                    " ON o.session_id = s.id WHERE s.status = ? ORDER BY s.started_at",
                    (SessionStatus.RUNNING,))]

    def field_indexes(self, session_id: str) -> set[int]:
        """The idx of every stored field of a session."""
        return {row[0] for row in self.conn.execute(
            "SELECT idx FROM fields WHERE session_id = ?", (session_id,))}

    def last_activity(self, session_id: str) -> str:
        """The newest time stored for a session: its start, a field or a telemetry snapshot."""
        return self.conn.execute(
            "SELECT MAX(t) FROM (SELECT started_at AS t FROM sessions WHERE id = ?1"
            " UNION ALL SELECT captured_at FROM fields WHERE session_id = ?1"
            " UNION ALL SELECT at FROM telemetry WHERE session_id = ?1)", (session_id,)
        ).fetchone()[0]

    def add_field(self, session_id: str, model_sha256: str, classes: list[str],
                  record: FieldRecord) -> int:
        """Store one field, its cells and its counts in one transaction; returns its row id."""
        t = record.timings_ms or {}
        try:
            with self.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO fields (session_id, idx, origin, captured_at, status, reason,"
                    " qc_json, width, height, model_sha256, evidence_path, decode_ms,"
                    " preprocess_ms, infer_ms, postprocess_ms, subtype_json, classify_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, record.idx, record.origin, record.captured_at, record.status,
                     record.reason, json.dumps(record.qc, sort_keys=True) if record.qc else None,
                     record.width, record.height, model_sha256,
                     record.evidence_path, t.get("decode"), t.get("preprocess"), t.get("infer"),
                     t.get("postprocess"),
                     json.dumps(record.subtype) if record.subtype is not None else None,
                     t.get("classify")),
                )
                field_id = int(cur.lastrowid)
                det = record.detections
                if det is not None:
                    counts = det.counts(len(classes))
                    conn.executemany(
                        "INSERT INTO field_counts (field_id, class_name, count) VALUES (?, ?, ?)",
                        [(field_id, name, int(counts[i])) for i, name in enumerate(classes)],
                    )
                    labels = record.cell_labels or {}
                    conn.executemany(
                        "INSERT INTO cells (field_id, class_name, confidence, x1, y1, x2, y2,"
                        " label, label_score, crop_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(field_id, classes[int(c)], float(s), *map(float, box),
                          *labels.get(i, (None, None, None)))
                         for i, (box, c, s) in enumerate(zip(det.xyxy, det.class_id,
                                                             det.confidence, strict=True))],
                    )
        except sqlite3.OperationalError as exc:  # a full disk is DiskFull (`transaction`)
            raise HemascopeError(f"database error in {self.data_dir}: {exc}",
                                 "run `hemascope doctor`; stored fields are safe") from None
        return field_id

    def end_session(self, session_id: str, status: SessionStatus,
                    ended_at: str | None = None) -> None:
        """Set the end time (default: now) and final status, inside the caller's transaction
        (which also queues the session's payload: `edge.pipeline.session.finish_session`)."""
        self.conn.execute("UPDATE sessions SET ended_at = ?, status = ? WHERE id = ?",
                          (ended_at or utc_now(), status, session_id))

    def add_telemetry(self, session_id: str, data: dict) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO telemetry (session_id, at, data_json) VALUES (?, ?, ?)",
                         (session_id, utc_now(), json.dumps(data, sort_keys=True)))

    def telemetry(self, session_id: str) -> list[dict]:
        return [{"at": row["at"], **json.loads(row["data_json"])} for row in self.conn.execute(
            "SELECT at, data_json FROM telemetry WHERE session_id = ? ORDER BY id", (session_id,))]

    def sessions(self) -> list[SessionRecord]:
        """Every session, newest first, with its number of fields of each status."""
        per_status = ", ".join(f"(SELECT COUNT(*) FROM fields f WHERE f.session_id = s.id"
                               f" AND f.status = '{status}') AS {status}"
                               for status in FieldStatus)
        return [_session(row, {status: row[status] for status in FieldStatus})
                for row in self.conn.execute(
                    f"SELECT s.*, {per_status} FROM sessions s ORDER BY s.started_at DESC")]

    def session(self, session_id: str) -> SessionRecord:
        """The session whose id starts with `session_id` (a unique prefix is enough)."""
        rows = self.conn.execute("SELECT * FROM sessions WHERE id LIKE ?",
                                 (f"{session_id}%",)).fetchall()
        if len(rows) != 1:
            what = "no session" if not rows else f"{len(rows)} sessions"
            raise HemascopeError(f"{what} matching id {session_id!r}",
                                 "list sessions with `hemascope sessions` and give a unique id")
        return _session(rows[0])

    def fields(self, session_id: str) -> list[StoredField]:
        return [_field(row) for row in self.conn.execute(
            "SELECT * FROM fields WHERE session_id = ? ORDER BY idx", (session_id,))]

    def field_counts(self, session_id: str) -> dict[int, dict[str, int]]:
        """{field idx: {class: count}} for the counted fields of a session."""
        out: dict[int, dict[str, int]] = {}
        for row in self.conn.execute(
            "SELECT f.idx, c.class_name, c.count FROM field_counts c JOIN fields f"
            " ON f.id = c.field_id WHERE f.session_id = ? ORDER BY f.idx", (session_id,)
        ):
            out.setdefault(row["idx"], {})[row["class_name"]] = row["count"]
        return out

    def differential(self, session_id: str) -> list[tuple[str, float]]:
        """(label, score) of every classified white cell of the session's counted fields."""
        return [(row["label"], row["label_score"]) for row in self.conn.execute(
            "SELECT c.label, c.label_score FROM cells c JOIN fields f ON f.id = c.field_id"
            " WHERE f.session_id = ? AND f.status = ? AND c.label IS NOT NULL"
            " ORDER BY f.idx, c.id", (session_id, FieldStatus.COUNTED))]

    def cells(self, session_id: str, idx: int) -> list[StoredCell]:
        """The stored cells of field `idx`, in detection order."""
        return [StoredCell(row["class_name"], row["confidence"],
                           (row["x1"], row["y1"], row["x2"], row["y2"]), row["label"],
                           row["label_score"], row["crop_path"])
                for row in self.conn.execute(
                    "SELECT c.* FROM cells c JOIN fields f ON f.id = c.field_id"
                    " WHERE f.session_id = ? AND f.idx = ? ORDER BY c.id", (session_id, idx))]

    def classified_cells(self, session_id: str) -> list[ClassifiedCell]:
        """Every white cell the differential classified in the session's counted fields, as
        (field_idx, cell, label, label_score, crop_path): `cell` is its detection number
        in the field (the KKK of its crop's file name)."""
        return [ClassifiedCell(*row) for row in self.conn.execute(
            "SELECT * FROM (SELECT f.idx AS field_idx, ROW_NUMBER() OVER (PARTITION BY f.id"
            " ORDER BY c.id) - 1 AS cell, c.label, c.label_score, c.crop_path FROM cells c"
            " JOIN fields f ON f.id = c.field_id WHERE f.session_id = ? AND f.status = ?)"
            " WHERE label IS NOT NULL ORDER BY field_idx, cell",
            (session_id, FieldStatus.COUNTED))]

    def add_reviews(self, session_id: str, rows: list[tuple[int, int, str]],
                    reviewer: str | None, origin: str) -> int:
        """Store (field_idx, cell, label) verdicts in one transaction (the caller's, if one is
        open); returns how many."""
        now = utc_now()
        with self.writing() as conn:
            conn.executemany(
                "INSERT INTO reviews (session_id, field_idx, cell, label, reviewer,"
                " reviewed_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(session_id, f, c, label, reviewer, now, origin) for f, c, label in rows])
        return len(rows)

    def reviews(self, session_id: str) -> list[Review]:
        """The newest verdict on each reviewed cell of a session, in field and cell order."""
        return [Review(*row) for row in self.conn.execute(
            "SELECT r.field_idx, r.cell, r.label, r.reviewer, r.reviewed_at, r.origin"
            " FROM reviews r WHERE r.session_id = ? AND r.id = (SELECT MAX(id) FROM reviews"
            " WHERE session_id = r.session_id AND field_idx = r.field_idx AND cell = r.cell)"
            " ORDER BY r.field_idx, r.cell", (session_id,))]

    def crop_paths(self, session_id: str) -> list[str | None]:
        """The stored crop of every classified cell of the session's counted fields."""
        return [row[0] for row in self.conn.execute(
            "SELECT c.crop_path FROM cells c JOIN fields f ON f.id = c.field_id"
            " WHERE f.session_id = ? AND f.status = ? AND c.label IS NOT NULL"
            " ORDER BY f.idx, c.id", (session_id, FieldStatus.COUNTED))]

    def add_stain_check(self, session_id: str, check: StainCheck) -> None:
        """Store (or replace) the session's stain check."""
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO stain_checks (session_id, cells, distance,"
                         " reference_distance, unfamiliar, checked_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (session_id, check.cells, check.distance, check.reference_distance,
                          int(check.unfamiliar), check.checked_at))

    def stain_check(self, session_id: str) -> StainCheck | None:
        row = self.conn.execute("SELECT cells, distance, reference_distance, unfamiliar,"
                                " checked_at FROM stain_checks WHERE session_id = ?",
                                (session_id,)).fetchone()
        return None if row is None else StainCheck(row[0], row[1], row[2], bool(row[3]), row[4])

    def add_field_review(self, session_id: str, field_idx: int, rejected: bool,
                         reason: str | None, reviewer: str | None, origin: str) -> None:
        """Store a verdict on a whole field: rejected (a reason is required) or restored."""
        with self.writing() as conn:
            conn.execute(
                "INSERT INTO field_reviews (session_id, field_idx, rejected, reason, reviewer,"
                " reviewed_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, field_idx, int(rejected), reason, reviewer, utc_now(), origin))

    def field_reviews(self, session_id: str) -> list[FieldReview]:
        """The newest verdict on each reviewed field of a session, in field order."""
        return [FieldReview(row[0], bool(row[1]), *row[2:]) for row in self.conn.execute(
            "SELECT r.field_idx, r.rejected, r.reason, r.reviewer, r.reviewed_at, r.origin"
            " FROM field_reviews r WHERE r.session_id = ? AND r.id = (SELECT MAX(id)"
            " FROM field_reviews WHERE session_id = r.session_id AND field_idx = r.field_idx)"
            " ORDER BY r.field_idx", (session_id,))]

    def totals(self, session_id: str) -> dict[str, int]:
        """Per-class totals over the session's counted fields (summed by SQLite)."""
        return {row["class_name"]: row["total"] for row in self.conn.execute(
            "SELECT c.class_name, SUM(c.count) AS total FROM field_counts c JOIN fields f"
            " ON f.id = c.field_id WHERE f.session_id = ? AND f.status = ?"
            " GROUP BY c.class_name", (session_id, FieldStatus.COUNTED))}


def _session(row: sqlite3.Row, by_status: dict[FieldStatus, int] | None = None
             ) -> SessionRecord:
    return SessionRecord(
        id=row["id"], sample_id=row["sample_id"], operator=row["operator"],
        profile_name=row["profile_name"], profile=json.loads(row["profile_json"]),
        source=row["source"], model_file=row["model_file"], model_sha256=row["model_sha256"],
        model_digest=row["model_digest"], classes=json.loads(row["classes_json"]),
        classifiers=json.loads(row["classifiers_json"] or "[]"),
        hemascope_version=row["hemascope_version"], started_at=row["started_at"],
        ended_at=row["ended_at"], status=SessionStatus(row["status"]),
        fields_by_status=by_status)


def _field(row: sqlite3.Row) -> StoredField:
    return StoredField(
        id=row["id"], idx=row["idx"], origin=row["origin"], captured_at=row["captured_at"],
        status=FieldStatus(row["status"]), reason=row["reason"],
        qc=json.loads(row["qc_json"]) if row["qc_json"] else None,
        width=row["width"], height=row["height"], model_sha256=row["model_sha256"],
        evidence_path=row["evidence_path"],
        timings_ms={k: row[f"{k}_ms"] for k in TIMED_STEPS},
        subtype=json.loads(row["subtype_json"]) if row["subtype_json"] else None)


def _make_private(db: Path) -> None:
    """The database readable by its owner only (0600), whatever the umask: created so if it
    is new (SQLite gives its -wal and -shm files the same mode), tightened if it is not."""
    private_file(db)
    for suffix in ("-wal", "-shm", "-journal"):
        side = db.with_name(db.name + suffix)
        if side.exists():
            side.chmod(0o600)


def _use_wal(conn: sqlite3.Connection, tries: int = 50) -> None:
    """PRAGMA journal_mode=WAL. Two commands opening a new database at once race for it, and
    SQLite answers 'database is locked' at once, without the busy wait: try again a while."""
    for attempt in range(tries):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.1)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add the `_ADDED_COLUMNS` a database lacks, in one transaction (two commands opening it
    at once add them once)."""
    def missing() -> list[tuple[str, str]]:
        return [(table, column) for table, column in _ADDED_COLUMNS
                if column.split()[0] not in {row[1] for row in conn.execute(
                    f"PRAGMA table_info({table})")}]

    if not missing():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column in missing():
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _upgrade_from_v2(conn: sqlite3.Connection) -> None:
    """Add the second-stage columns to a schema-2 database, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != 2:  # upgraded meanwhile
            conn.execute("COMMIT")
            return
        for table, column in _V3_COLUMNS:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
