"""Fault-injection run: every session reaches the hub exactly once, through a hostile network.

Creates N finished sessions (and amended second versions of some) through edge.storage.store.Store,
enrols the device at a real hub process (SQLite, or a throwaway PostgreSQL server), then runs
the real `hemascope sync` through scripts/faultproxy.py (requests dropped, delayed, reset,
duplicated; answers lost or cut) while the hub is SIGKILLed and restarted at random moments
and the device's sync process is SIGKILLed mid-run, round after round, until nothing is
pending. Finally it compares every payload the hub holds with the device's copy, byte for
byte. Everything runs on 127.0.0.1; every loop is bounded in count and time. Prints JSON.

    .venv/bin/python scripts/sync_faults.py --sessions 1000 --seed 1 --json sync_faults.json
    .venv/bin/python scripts/sync_faults.py --sessions 1000 --seed 1 --db postgres
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.faultproxy import KINDS  # noqa: E402
from tests.helpers.pgserver import TempPostgres  # noqa: E402
from tests.helpers.sync import (  # noqa: E402
    FaultProxy,
    Hub,
    amend,
    device_profile,
    device_rows,
    make_sessions,
)

DEVICE = "clinic-faults"


def pending(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "hemascope.db", timeout=30) as conn:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE state != 'sent'").fetchone()[0]


def attempts(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "hemascope.db", timeout=30) as conn:
        return conn.execute("SELECT SUM(attempts) FROM outbox").fetchone()[0]


def hub_counts(hub: Hub) -> dict[str, int]:
    """Row counts straight from the hub database: rows, distinct versions, sessions."""
    sql = ("SELECT COUNT(*), COUNT(DISTINCT payload_key || ':' || version),"
           " COUNT(DISTINCT payload_key) FROM payloads")
    if hub.db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(hub.db) as conn:
            rows, versions, sessions = conn.execute(sql).fetchone()
    else:
        with sqlite3.connect(hub.db) as conn:
            rows, versions, sessions = conn.execute(sql).fetchone()
    return {"rows": rows, "distinct_versions": versions, "sessions": sessions}


def chaos(hub: Hub, stop: threading.Event, rng: random.Random, max_kills: int) -> None:
    """Kill the hub (SIGKILL) every few seconds and start it again, until told to stop."""
    while hub.restarts < max_kills and not stop.wait(rng.uniform(0.5, 3.0)):
        hub.kill()
        time.sleep(rng.uniform(0.1, 1.0))
        hub.restarts += 1
        hub.start()


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    data = work / "device"
    ids = make_sessions(data, args.sessions, seed=args.seed)
    amended = rng.sample(ids, args.amend)
    for sid in amended:
        amend(data, sid, "amended")
    created_s = time.monotonic() - t0

    pg = TempPostgres().start() if args.db == "postgres" else None
    db = pg.new_database("hub") if pg else str(work / "hub.db")
    hub = Hub(db, work).start()
    token = hub.add_device(DEVICE)
    probability = args.fault_rate / len(KINDS)
    proxy = FaultProxy(hub.port, work, seed=args.seed, delay_max=args.timeout * 1.5,
                       **dict.fromkeys(KINDS, probability))
    profile = device_profile(work, data, proxy.url, token, batch_size=args.batch_size,
                             timeout_s=args.timeout, retries=50, backoff_s=0.05,
                             backoff_max_s=1.0)
    stop = threading.Event()
    chaos_thread = threading.Thread(target=chaos, args=(hub, stop, rng, args.hub_kills))
    t1 = time.monotonic()
    chaos_thread.start()
    rounds, device_kills, kills_while_uploading, exit_codes = 0, 0, 0, {}
    try:
        while rounds < args.max_rounds and time.monotonic() - t1 < args.max_seconds:
            rounds += 1
            tried_before = attempts(data)
            proc = subprocess.Popen([sys.executable, "-m", "edge", "sync", "-p", str(profile)],
                                    cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            kill_after = rng.uniform(0.3, 2.5) if rounds <= args.device_kills else None
            try:
                rc = proc.wait(timeout=kill_after or args.max_seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
                device_kills += 1
                kills_while_uploading += attempts(data) > tried_before
                rc = -9
            exit_codes[str(rc)] = exit_codes.get(str(rc), 0) + 1
            if rc == 0 and pending(data) == 0:
                break
    finally:
        stop.set()
        chaos_thread.join(timeout=60)
    sync_s = time.monotonic() - t1
    faults = proxy.stop()

    device = device_rows(data)
    held = hub.rows()
    mine = {(k, v): payload for (d, k, v), payload in held.items() if d == DEVICE}
    counts = hub_counts(hub)
    hub.stop()
    if pg:
        pg.stop()
    return {
        "backend": args.db,
        "sessions": args.sessions,
        "payload_versions": len(device),
        "amended_sessions": len(amended),
        "faults_injected": {k: faults.get(k, 0) for k in KINDS},
        "proxy_requests": faults.get("requests", 0),
        "proxy_502_hub_down": faults.get("hub_down_502", 0),
        "proxy_502_hub_died_holding_request": faults.get("hub_cut_502", 0),
        "hub_kills": hub.restarts,
        "device_kills": device_kills,
        "device_kills_after_uploads_began": kills_while_uploading,
        "sync_runs": rounds,
        "sync_exit_codes": exit_codes,
        "upload_attempts": attempts(data),
        "hub_rows": counts["rows"],
        "hub_sessions": counts["sessions"],
        "duplicates": counts["rows"] - counts["distinct_versions"],
        "losses": sum(1 for k in device if k not in mine),
        "unexpected_at_hub": sum(1 for k in mine if k not in device),
        "byte_mismatches": sum(1 for k, (sha, body, _) in device.items() if k in mine and (
            mine[k] != (sha, body) or hashlib.sha256(mine[k][1]).hexdigest() != sha)),
        "device_not_sent": sum(1 for _, _, state in device.values() if state != "sent"),
        "create_s": round(created_s, 1),
        "sync_wall_s": round(sync_s, 1),
        "wall_s": round(time.monotonic() - t0, 1),
        "settings": {"seed": args.seed, "batch_size": args.batch_size,
                     "timeout_s": args.timeout, "fault_rate": args.fault_rate,
                     "device_kills_planned": args.device_kills},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--amend", type=int, default=50, help="sessions amended (version 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0, help="device request timeout (s)")
    parser.add_argument("--fault-rate", type=float, default=0.35,
                        help="share of requests that meet a fault, split evenly over kinds")
    parser.add_argument("--device-kills", type=int, default=15,
                        help="the first N sync runs are SIGKILLed 0.3-2.5 s after they start")
    parser.add_argument("--hub-kills", type=int, default=40, help="most hub SIGKILL restarts")
    parser.add_argument("--max-rounds", type=int, default=200, help="most sync runs")
    parser.add_argument("--max-seconds", type=float, default=1200, help="time bound of syncing")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hs-faults-"))
    try:
        result = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = not (result["duplicates"] or result["losses"] or result["byte_mismatches"]
              or result["device_not_sent"] or result["unexpected_at_hub"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
