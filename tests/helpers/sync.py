"""Real processes for sync tests and the fault-injection script: hub, proxy, device data.

Everything listens on 127.0.0.1, and every wait is bounded in time.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.core.detections import Detections
from edge.core.labels import SessionStatus
from edge.core.records import FieldRecord
from edge.pipeline.session import finish_session
from edge.storage.store import Store
from edge.sync.client import write_token
from edge.sync.models import canonical_json
from edge.sync.payload import outbox
from tests.helpers.pgserver import free_port

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["WBC", "RBC", "Platelets"]
MODEL_SHA = "5" * 64


def make_sessions(data_dir: Path, n: int, seed: int = 0, max_fields: int = 4,
                  max_cells: int = 60) -> list[str]:
    """n finished sessions through the Store API, with random fields, cells and a skip now
    and then; each finish enqueues its payload, as on a device."""
    rng = np.random.default_rng(seed)
    store = Store.open(data_dir)
    ids = []
    for s in range(n):
        sid = store.start_session(
            sample_id=f"S-{seed}-{s:05d}", operator="amina", profile_name="test",
            profile_json="{}", source="synthetic", model_file="detector.onnx",
            model_sha256=MODEL_SHA, classes=CLASSES, version="0.1.0")
        for i in range(int(rng.integers(1, max_fields + 1))):
            if rng.random() < 0.1:
                record = FieldRecord(idx=i, origin=f"f{i}.jpg", captured_at="2026-11-24T08:00:00",
                                     status="skipped", reason="unreadable image")
            else:
                k = int(rng.integers(0, max_cells + 1))
                xy = rng.uniform(0, 600, (k, 2)).astype(np.float32)
                det = Detections.from_arrays(np.hstack([xy, xy + 20]),
                                             rng.integers(0, 3, k),
                                             rng.uniform(0.3, 1, k).astype(np.float32))
                record = FieldRecord(idx=i, origin=f"f{i}.jpg", captured_at="2026-11-24T08:00:00",
                                     status="counted", width=640, height=480, detections=det,
                                     timings_ms={"infer": float(rng.uniform(10, 20))})
            store.add_field(sid, MODEL_SHA, CLASSES, record)
        finish_session(store, sid, SessionStatus.FINISHED if rng.random() < 0.95
                       else SessionStatus.INTERRUPTED)
        ids.append(sid)
    store.close()
    return ids


def large_payload(template: dict[str, Any], key: str, target_bytes: int,
                  cells_per_field: int) -> bytes:
    """A valid payload of about `target_bytes`: the golden session's head with as many
    counted fields of `cells_per_field` cells as fit (no evidence)."""
    payload = json.loads(json.dumps(template))
    payload["key"] = payload["summary"]["session_id"] = key
    payload["evidence"] = None
    model = payload["summary"]["model"]["sha256"]
    per_field = 40 * cells_per_field + 400  # bytes of one field, detail and summary
    n = max(1, target_bytes // per_field)
    fields, summary_fields = [], []
    totals = dict.fromkeys(CLASSES, 0)
    for i in range(n):
        cells = [[CLASSES[k % 3], round(0.3 + (k % 70) / 100, 5), 10.25 + k % 600,
                  20.5 + i % 400, 31.75 + k % 600, 42.0 + i % 400]
                 for k in range(cells_per_field)]
        counts = {c: sum(1 for cell in cells if cell[0] == c) for c in CLASSES}
        for c, v in counts.items():
            totals[c] += v
        fields.append({"captured_at": "2026-11-24T08:00:00", "cells": cells, "height": 480,
                       "idx": i, "model_sha256": model, "width": 640,
                       "timings_ms": {"decode": 1.5, "infer": 10.25, "postprocess": 0.5,
                                      "preprocess": 2.25}})
        summary_fields.append({"all_subtype": None, "counts": counts, "evidence": None,
                               "idx": i, "origin": f"f{i:05d}.jpg", "qc": {"focus": 12.5},
                               "reason": None, "status": "counted"})
    summary = payload["summary"]
    summary.update(fields=summary_fields, fields_counted=n, fields_rejected=0,
                   fields_skipped=0, totals=totals, differential=None, all_subtype=None,
                   mean_per_field={c: round(totals[c] / n, 3) for c in CLASSES})
    payload["fields"] = fields
    return canonical_json(payload)


def amend(data_dir: Path, session_id: str, operator: str) -> int | None:
    """Change a finished session and enqueue its next payload version, in one transaction."""
    store = Store.open(data_dir)
    with store.transaction() as conn:
        conn.execute("UPDATE sessions SET operator = ? WHERE id = ?", (operator, session_id))
        version = outbox(store).enqueue(session_id)
    store.close()
    return version


def device_rows(data_dir: Path) -> dict[tuple[str, int], tuple[str, bytes, str]]:
    """{(key, version): (sha256, body, state)} from the device outbox."""
    store = Store.open(data_dir)
    outbox(store)
    rows = {(r["payload_key"], r["version"]): (r["sha256"], r["body"], r["state"])
            for r in store.conn.execute("SELECT * FROM outbox")}
    store.close()
    return rows


def device_profile(folder: Path, data_dir: Path, hub_url: str, token: str | None,
                   **sync: Any) -> Path:
    """A device profile TOML pointing at the hub; the token is stored like set-token does."""
    token_path = folder / f"{data_dir.name}.token"
    if token is not None:
        write_token(token_path, token)
    lines = ["[storage]", f'data_dir = "{data_dir}"', "evidence = false", "[sync]",
             f'hub_url = "{hub_url}"', f'token_path = "{token_path}"',
             *(f"{k} = {json.dumps(v) if not isinstance(v, Path) else repr(str(v))}"
               for k, v in sync.items())]
    path = folder / f"{data_dir.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def hub_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, check=False)


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30,
                   tls: bool = False) -> None:
    """Poll until the hub answers /api/v1/health (or the proxy accepts), bounded."""
    ctx = ssl._create_unverified_context() if tls else None
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/v1/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                resp.read()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


class Hub:
    """A `hemascope-hub serve` process that can be killed and restarted on the same port."""

    def __init__(self, db: str, folder: Path, tls: tuple[Path, Path] | None = None,
                 serve_args: list[str] | None = None) -> None:
        self.db, self.folder, self.tls = db, folder, tls
        self.serve_args = serve_args or []
        self.port = free_port()
        self.log = folder / f"hub-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.reader: str | None = None  # a read token, when a test made one

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/api"

    def start(self) -> Hub:
        cmd = [sys.executable, "-m", "hub", "serve", "--db", self.db, "--port", str(self.port),
               *self.serve_args]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_listening(self.port, self.proc, self.log, tls=self.tls is not None)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, an open transaction is cut where it stands."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def add_device(self, device_id: str) -> str:
        done = hub_cli("add-device", device_id, "--db", self.db)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def add_reader(self, reader_id: str) -> str:
        done = hub_cli("add-reader", reader_id, "--db", self.db)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def rows(self) -> dict[tuple[str, str, int], tuple[str, bytes]]:
        """{(device, key, version): (sha256, body)} read straight from the hub database."""
        sql = "SELECT device_id, payload_key, version, sha256, body FROM payloads"
        if self.db.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.db, connect_timeout=10) as conn:
                found = conn.execute(sql).fetchall()
        else:
            with sqlite3.connect(self.db, timeout=30) as conn:
                found = conn.execute(sql).fetchall()
        return {(d, k, v): (sha, bytes(body)) for d, k, v, sha, body in found}


class FaultProxy:
    """scripts/faultproxy.py as a process; stop() returns its fault counts."""

    def __init__(self, upstream_port: int, folder: Path, seed: int, **probabilities: float
                 ) -> None:
        self.port = free_port()
        self.stats = folder / f"proxy-{self.port}.json"
        cmd = [sys.executable, str(ROOT / "scripts" / "faultproxy.py"), "--port", str(self.port),
               "--upstream-port", str(upstream_port), "--seed", str(seed), "--stats",
               str(self.stats), *(a for k, p in probabilities.items()
                                  for a in (f"--{k.replace('_', '-')}", str(p)))]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.startswith("listening"), line

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def stop(self) -> dict[str, int]:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return json.loads(self.stats.read_text())


def post(url: str, token: str | None, payloads: list[dict[str, Any]]) -> tuple[int, dict]:
    """A raw upload request, as any client could send it."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + "/v1/payloads", json.dumps({"payloads": payloads}).encode(),
                                 headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, token: str | None = None, method: str = "GET",
        authorization: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers with lower-case names) of a request to the hub, with a bearer
    token or an Authorization header if given."""
    if token is not None:
        authorization = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, headers={"Authorization": authorization}
                                 if authorization is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


def as_upload(key: str, version: int, sha: str, body: bytes) -> dict[str, Any]:
    return {"key": key, "version": version, "sha256": sha, "body": body.decode("ascii")}


def hub_db(request: pytest.FixtureRequest, backend: str, folder: Path) -> str:
    if backend == "postgres":
        return request.getfixturevalue("postgres").new_database(f"hub_{uuid.uuid4().hex[:12]}")
    return str(folder / "hub.db")
