"""Kill real folder runs at random moments, then check that nothing is lost or left behind.

Two `hemascope run` processes work at once on one shared data dir; in turn, the older one is
sent SIGKILL or SIGTERM (a seeded shuffle of N and M) at a random moment of its life (model
loading, the first field, mid-run, sometimes after its end) and replaced by a new run. After
each stop, before any other command starts:

- SIGTERM: its session must already be 'interrupted' and queued for sync;
- then `hemascope sessions` (a start, which recovers) runs while the other run still works:
  the other run's session must stay 'running', and no field stored before the stop is lost.

At the end, after one more start: SQLite integrity, every committed field present with its
files, 0 sessions 'running', 0 orphan files, every interrupted session in the outbox, and the
audit log intact with the start and the end (stop or recovery) of every session.

    python scripts/kill_runs.py --folder ../shared/datasets/detection/bccd/JPEGImages \
        --kills 10 --terms 4 --seed 0 --json docs/bench/kill_runs.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.pipeline.recovery import orphan_files  # noqa: E402
from edge.storage import audit as audit_log  # noqa: E402
from edge.storage import layout  # noqa: E402
from edge.storage.pseudonyms import pseudonym  # noqa: E402


def start_run(folder: Path, data_dir: Path, sample: str, log: Path,
              extra: list[str] | None = None) -> subprocess.Popen:
    """`hemascope run` on a folder (and `extra` arguments), in a fresh interpreter (this
    tree's `edge`), its stderr written to `log`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as fh:
        return subprocess.Popen([sys.executable, "-m", "edge", "run", "-s", f"folder:{folder}",
                                 "--data-dir", str(data_dir), "--sample", sample,
                                 *(extra or [])],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=fh)


def hemascope(*args: str) -> subprocess.CompletedProcess:
    """A short `hemascope` command (each is a start, so it recovers)."""
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
                          timeout=300)


def read_db(data_dir: Path) -> sqlite3.Connection:
    """A read-only look at the database: reading never recovers anything."""
    conn = sqlite3.connect(f"file:{data_dir / layout.DATABASE}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def session_of(data_dir: Path, sample: str) -> dict[str, Any] | None:
    """Status, stored field indexes and outbox versions of the session of `sample`."""
    if not (data_dir / layout.DATABASE).exists():
        return None
    conn = read_db(data_dir)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "sessions" not in tables:  # the database is being created
            return None
        secret = data_dir / layout.DEVICE_SECRET  # the run stores the sample's pseudonym
        alias = pseudonym(secret.read_bytes(), "sample", sample) if secret.exists() else sample
        row = conn.execute("SELECT id, status FROM sessions WHERE sample_id IN (?, ?)",
                           (sample, alias)).fetchone()
        if row is None:
            return None
        idx = [r[0] for r in conn.execute("SELECT idx FROM fields WHERE session_id = ?"
                                          " ORDER BY idx", (row["id"],))]
        queued = "outbox" in tables and conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE payload_key = ?", (row["id"],)).fetchone()[0]
        return {"id": row["id"], "status": row["status"], "fields": idx, "queued": bool(queued)}
    finally:
        conn.close()


def wait_fields(data_dir: Path, sample: str, n: int, proc: subprocess.Popen,
                timeout: float = 120) -> dict[str, Any]:
    """Wait until the run of `sample` has stored `n` fields (the run must still work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = session_of(data_dir, sample)
        if s is not None and len(s["fields"]) >= n:
            return s
        if proc.poll() is not None:
            raise RuntimeError(f"run {sample} ended ({proc.returncode}) before {n} fields")
        time.sleep(0.05)
    raise TimeoutError(f"run {sample} stored fewer than {n} fields in {timeout} s")


def audit(data_dir: Path) -> dict[str, Any]:
    """The final checks over the whole data dir (read-only)."""
    conn = read_db(data_dir)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        sessions = conn.execute("SELECT id, status FROM sessions").fetchall()
        missing = [p for (p,) in conn.execute(
            "SELECT evidence_path FROM fields WHERE evidence_path IS NOT NULL UNION ALL"
            " SELECT crop_path FROM cells WHERE crop_path IS NOT NULL")
            if not (data_dir / p).is_file()]
        not_queued = [r["id"] for r in conn.execute(
            "SELECT id FROM sessions WHERE status = 'interrupted' AND id NOT IN"
            " (SELECT payload_key FROM outbox)")]
        gaps = [r["id"] for r in conn.execute(
            "SELECT session_id AS id FROM fields GROUP BY session_id"
            " HAVING COUNT(*) != MAX(idx) + 1")]
        stored = {s["id"]: {r[0] for r in conn.execute(
            "SELECT idx FROM fields WHERE session_id = ?", (s["id"],))} for s in sessions}
        fields = conn.execute("SELECT COUNT(*) FROM fields").fetchone()[0]
    finally:
        conn.close()
    orphans = [str(p) for sid, idx in stored.items() for p in orphan_files(data_dir, sid, idx)]
    orphans += [str(p) for p in data_dir.rglob("*.tmp")]
    log = audit_log.verify(data_dir)
    events = audit_log.recent(data_dir, log.events)
    started = {e.details["session"] for e in events if e.kind == "session.start"}
    ended = {e.details["session"] for e in events
             if e.kind in ("session.stop", "session.recovered")}
    return {
        "integrity": integrity,
        "sessions": len(sessions),
        "by_status": {st: sum(s["status"] == st for s in sessions)
                      for st in ("running", "finished", "interrupted")},
        "fields": fields,
        "field_files_missing": len(missing),
        "sessions_with_field_gaps": len(gaps),
        "orphan_files": sorted(set(orphans)),
        "interrupted_not_in_outbox": not_queued,
        # the audit log: chain and head intact, every session's start in it, and the stop or
        # recovery of every session that is not running
        "audit_events": log.events,
        "audit_problems": log.problems,
        "sessions_without_start_event": sorted({s["id"] for s in sessions} - started),
        "ended_sessions_without_end_event": sorted(
            {s["id"] for s in sessions if s["status"] != "running"} - ended),
    }


class Trial:
    """Two runs at once on one data dir; the older one is stopped at each event."""

    def __init__(self, folder: Path, data_dir: Path, rng: random.Random, max_delay: float):
        self.folder, self.data_dir, self.rng, self.max_delay = folder, data_dir, rng, max_delay
        self.runs: list[tuple[str, subprocess.Popen, float]] = []
        self.started = 0
        self.failures: list[str] = []

    def launch(self) -> None:
        sample = f"K-{self.started:04d}"
        self.started += 1
        log = self.data_dir.parent / f"{sample}.log"
        self.runs.append((sample, start_run(self.folder, self.data_dir, sample, log),
                          time.monotonic()))

    def log(self, sample: str) -> str:
        """The end of a run's stderr."""
        return (self.data_dir.parent / f"{sample}.log").read_text().strip()[-300:]

    def event(self, kind: str) -> dict[str, Any]:
        sample, proc, t0 = self.runs.pop(0)
        time.sleep(max(0.0, t0 + self.rng.uniform(0, self.max_delay) - time.monotonic()))
        before = session_of(self.data_dir, sample)
        proc.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        proc.wait()
        # 0: the run ended before its stop; SIGTERM ends a command with 130 as Ctrl-C does,
        # or kills a Python still starting
        if proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM, 130):
            self.failures.append(f"{sample}: exited {proc.returncode} before its stop: "
                                 f"{self.log(sample)}")
        at_stop = session_of(self.data_dir, sample)
        moment = ("before its session" if at_stop is None else "after its end"
                  if before is not None and before["status"] != "running" else "mid-run")
        record = {"sample": sample, "signal": kind, "moment": moment,
                  "returncode": proc.returncode,
                  "fields_at_stop": len(at_stop["fields"]) if at_stop else 0}
        if kind == "term" and moment == "mid-run" and not (
                at_stop["status"] == "interrupted" and at_stop["queued"]):
            self.failures.append(f"{sample}: SIGTERM left it {at_stop['status']}, "
                                 f"queued={at_stop['queued']}")
        others = [(s, p, session_of(self.data_dir, s)) for s, p, _ in self.runs]
        result = hemascope("sessions", "--data-dir", str(self.data_dir))
        if result.returncode != 0:
            self.failures.append(f"hemascope sessions failed: {result.stderr.strip()}")
        removed = re.search(r"(\d+) orphan files removed", result.stderr)
        record["orphan_files_removed"] = int(removed[1]) if removed else 0
        after = session_of(self.data_dir, sample)
        if at_stop is not None and after["fields"] != at_stop["fields"]:
            self.failures.append(f"{sample}: fields {at_stop['fields']} -> {after['fields']}")
            record["fields_lost"] = len(set(at_stop["fields"]) - set(after["fields"]))
        for s, p, seen in others:
            now = session_of(self.data_dir, s)
            if seen is not None and seen["status"] == "running" and p.poll() is None \
                    and now["status"] != "running":
                self.failures.append(f"{s}: closed as {now['status']} while its run was alive")
        record["recovered_after"] = after["status"] if after else None
        self.launch()
        return record

    def finish(self) -> None:
        for sample, proc, _ in self.runs:
            if proc.wait(timeout=600) != 0:
                self.failures.append(f"{sample}: last run exited {proc.returncode}: "
                                     f"{self.log(sample)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, required=True, help="images copied for the runs")
    ap.add_argument("--images", type=int, default=100, help="how many images (seeded choice)")
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs")
    ap.add_argument("--terms", type=int, default=4, help="SIGTERMs")
    ap.add_argument("--max-delay", type=float, default=5.0,
                    help="a stop comes 0..this many seconds after its run started")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    events = ["kill"] * args.kills + ["term"] * args.terms
    rng.shuffle(events)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-runs-") as tmp:
        folder, data_dir = Path(tmp) / "images", Path(tmp) / "data"
        folder.mkdir()
        images = sorted(p for p in args.folder.iterdir() if p.suffix.lower() == ".jpg")
        for p in rng.sample(images, min(args.images, len(images))):
            shutil.copy2(p, folder / p.name)
        trial = Trial(folder, data_dir, rng, args.max_delay)
        trial.launch()
        trial.launch()
        records = [trial.event(kind) for kind in events]
        trial.finish()
        start = hemascope("sessions", "--data-dir", str(data_dir))  # the next start
        checks = audit(data_dir)
    report = {
        "seed": args.seed, "images": args.images, "kills": args.kills, "terms": args.terms,
        "max_delay_s": args.max_delay, "runs": trial.started,
        "moments": {m: sum(r["moment"] == m for r in records)
                    for m in ("before its session", "mid-run", "after its end")},
        "fields_at_stops": sum(r["fields_at_stop"] for r in records),
        "committed_fields_lost": sum(r.get("fields_lost", 0) for r in records),
        "orphan_files_removed_by_recovery": sum(r["orphan_files_removed"] for r in records),
        "sessions_running_after_next_start": checks["by_status"]["running"],
        "orphan_files": len(checks["orphan_files"]),
        "interrupted_not_in_outbox": len(checks["interrupted_not_in_outbox"]),
        "integrity": checks["integrity"],
        "audit_problems": len(checks["audit_problems"]),
        "checks": checks, "failures": trial.failures + (
            [f"final sessions failed: {start.stderr.strip()}"] if start.returncode else []),
        "events": records, "seconds": round(time.monotonic() - t0, 1),
    }
    report["ok"] = (not report["failures"] and checks["integrity"] == "ok"
                    and not checks["field_files_missing"] and not checks["by_status"]["running"]
                    and not checks["orphan_files"] and not checks["interrupted_not_in_outbox"]
                    and not checks["sessions_with_field_gaps"] and not checks["audit_problems"]
                    and not checks["sessions_without_start_event"]
                    and not checks["ended_sessions_without_end_event"])
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
