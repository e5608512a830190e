"""Hub memory under load: N large uploads at once, peak RSS of the hub process.

Starts a throwaway PostgreSQL server (or a SQLite file) and a real `hemascope-hub serve` on
127.0.0.1, enrols a device, builds N distinct valid session payloads of about --payload-mb
each (many fields of many cells: the shape of a real session, and the one that cost most
memory per byte when the hub decoded payloads whole), and sends them all at once from N
threads. An upload answered 503 (the hub's upload limit is full) is sent again after its
Retry-After; a connection cut while sending counts as a retry too. The hub's resident
memory is sampled from /proc every 5 ms and its high-water mark (VmHWM) read at the end.
Finally every payload is checked at the hub (its sha256). Prints JSON (and writes it with
--json); exit code 1 unless every payload was stored.

    PYTHONPATH=. .venv/bin/python scripts/hub_load.py --uploads 10 --payload-mb 34 \\
        --json docs/bench/hub-load.json
    PYTHONPATH=. .venv/bin/python scripts/hub_load.py --serve-args='--max-uploads 4' \\
        --json docs/bench/hub-load-4.json
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.golden import SESSION_ID, golden_body, make_golden_session  # noqa: E402
from tests.helpers.pgserver import TempPostgres  # noqa: E402
from tests.helpers.sync import Hub, large_payload  # noqa: E402

DEVICE = "clinic-load"


def write_upload(path: Path, key: str, body: bytes) -> str:
    """The request body of one upload, as the device sends it; returns the payload sha256."""
    sha = hashlib.sha256(body).hexdigest()
    envelope = {"payloads": [{"key": key, "version": 1, "sha256": sha,
                              "body": body.decode("ascii")}]}
    path.write_bytes(json.dumps(envelope, separators=(",", ":")).encode())
    return sha


class RssSampler(threading.Thread):
    """Samples VmRSS of a process until stopped; `peak_mb` is the highest sample."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_mb = 0.0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_mb = max(self.peak_mb, status_mb(self.pid, "VmRSS"))
            self.samples += 1
            time.sleep(self.every_s)


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def upload(port: int, token: str, path: Path, max_attempts: int) -> dict[str, Any]:
    """Send one upload until the hub answers other than 503 (or a cut connection)."""
    statuses: list[int | str] = []
    for _ in range(max_attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            with path.open("rb") as fh:
                conn.request("POST", "/api/v1/payloads", body=fh, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Content-Length": str(path.stat().st_size)})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            statuses.append(resp.status)
            if resp.status != 503:
                return {"statuses": statuses, "results": answer.get("results")}
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        except OSError as exc:  # cut while sending: the hub answered before reading it all
            statuses.append(type(exc).__name__)
            time.sleep(1.0)
        finally:
            conn.close()
    return {"statuses": statuses, "results": None}


def held(hub: Hub) -> dict[str, str]:
    """{payload key: sha256} at the hub, straight from its database."""
    sql = "SELECT payload_key, sha256 FROM payloads"
    if hub.db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(hub.db) as conn:
            return dict(conn.execute(sql).fetchall())
    import sqlite3

    with sqlite3.connect(hub.db) as conn:
        return dict(conn.execute(sql).fetchall())


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    make_golden_session(work / "golden")
    template = json.loads(golden_body(work / "golden"))
    uploads: list[tuple[str, Path, str]] = []
    t0 = time.monotonic()
    first = large_payload(template, SESSION_ID, int(args.payload_mb * 2**20),
                          args.cells_per_field)
    size_mb = len(first) / 2**20
    for i in range(args.uploads):  # the same session under N keys: N distinct payloads
        key = f"{i:04d}{SESSION_ID[4:]}"
        path = work / f"upload-{i}.json"
        uploads.append((key, path, write_upload(path, key, first.replace(
            SESSION_ID.encode(), key.encode()))))
    del first
    built_s = time.monotonic() - t0

    pg = TempPostgres().start() if args.db == "postgres" else None
    try:
        db = pg.new_database("hub") if pg else str(work / "hub.db")
        hub = Hub(db, work, serve_args=args.serve_args).start()
        try:
            token = hub.add_device(DEVICE)
            assert hub.proc is not None
            idle_mb = status_mb(hub.proc.pid, "VmRSS")
            sampler = RssSampler(hub.proc.pid)
            sampler.start()
            answers: list[dict[str, Any]] = [{} for _ in uploads]

            def send(i: int) -> None:
                answers[i] = upload(hub.port, token, uploads[i][1], args.max_attempts)

            t1 = time.monotonic()
            threads = [threading.Thread(target=send, args=(i,)) for i in range(len(uploads))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall_s = time.monotonic() - t1
            sampler.stop.set()
            sampler.join()
            hwm_mb = status_mb(hub.proc.pid, "VmHWM")
            at_hub = held(hub)
        finally:
            hub.stop()
    finally:
        if pg is not None:
            pg.stop()
    stored = sum(at_hub.get(key) == sha for key, _, sha in uploads)
    statuses = [s for a in answers for s in a["statuses"]]
    return {
        "uploads": args.uploads, "payload_mb": round(size_mb, 2),
        "request_mb": round(uploads[0][1].stat().st_size / 2**20, 2),
        "cells_per_field": args.cells_per_field, "db": args.db,
        "serve_args": args.serve_args,
        "hub_idle_rss_mb": round(idle_mb, 1), "hub_peak_rss_mb": round(hwm_mb, 1),
        "hub_peak_rss_sampled_mb": round(sampler.peak_mb, 1), "rss_samples": sampler.samples,
        "stored_byte_identical": stored,
        "answers": {str(k): statuses.count(k) for k in sorted(set(statuses), key=str)},
        "attempts_per_upload": [len(a["statuses"]) for a in answers],
        "wall_s": round(wall_s, 1), "build_s": round(built_s, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=10, help="uploads sent at once")
    ap.add_argument("--payload-mb", type=float, default=34, help="size of each payload")
    ap.add_argument("--cells-per-field", type=int, default=200)
    ap.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--max-attempts", type=int, default=200,
                    help="tries per upload before giving up (503s and cut connections)")
    ap.add_argument("--serve-args", type=shlex.split, default=[],
                    help="extra `hemascope-hub serve` options in one string, e.g. "
                    "--serve-args='--max-uploads 4'")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hs-hubload-") as tmp:
        report = run(args, Path(tmp))
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    sys.exit(0 if report["stored_byte_identical"] == args.uploads else 1)


if __name__ == "__main__":
    main()
