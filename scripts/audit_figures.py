"""What tamper evidence costs: audit appends and verification, digests and signature checks.

Appends `--appends` real events (each its own transaction: the log line and the database
head, both synced to disk), then verifies a log of `--events` events (the chain written
directly, as it would be after years of use); loads the bundled detector and differential
without and with a required signature. JSON on stdout (and `--json`).

    python scripts/audit_figures.py --json docs/bench/audit-signing.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import BUNDLED_DETECTOR, BUNDLED_WBC_CLASSIFIER  # noqa: E402
from edge.core.files import utc_now  # noqa: E402
from edge.inference.classifier import Classifier  # noqa: E402
from edge.inference.detector import Detector  # noqa: E402
from edge.inference.manifest import read_manifest, verify_model  # noqa: E402
from edge.inference.signing import generate_key, load_private_key, sign_digest  # noqa: E402
from edge.storage import audit  # noqa: E402
from edge.storage.store import Store  # noqa: E402

DETAILS = {"session": "0" * 32, "role": "detector", "file": "detector.onnx", "sha256": "a" * 64,
           "digest": "b" * 64, "signed_by": None}


def appends(folder: Path, n: int) -> dict[str, float]:
    store = Store.open(folder)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        audit.record(store, "model.loaded", DETAILS)
        times.append((time.perf_counter() - t0) * 1e3)
    store.close()
    size = audit.log_path(folder).stat().st_size
    return {"events": n, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(statistics.quantiles(times, n=10)[-1], 2),
            "bytes_per_event": round(size / n), "verified_problems": len(audit.verify(folder)
                                                                         .problems)}


def verification(folder: Path, n: int) -> dict[str, float]:
    prev, lines = audit.GENESIS, []
    for seq in range(1, n + 1):
        at = utc_now()
        digest = audit.event_hash(seq, at, "model.loaded", DETAILS, prev)
        lines.append(json.dumps({"seq": seq, "at": at, "kind": "model.loaded",
                                 "details": DETAILS, "prev": prev, "hash": digest},
                                sort_keys=True, separators=(",", ":")) + "\n")
        prev = digest
    audit.log_path(folder).write_text("".join(lines))
    store = Store.open(folder)
    store.conn.execute("INSERT INTO audit_state (key, value) VALUES ('seq', ?), ('hash', ?)",
                       (str(n), prev))
    store.close()
    t0 = time.perf_counter()
    result = audit.verify(folder)
    seconds = time.perf_counter() - t0
    assert not result.problems and result.events == n, result.problems
    return {"events": n, "seconds": round(seconds, 3),
            "log_mb": round(audit.log_path(folder).stat().st_size / 2**20, 1)}


def model_loads(folder: Path, repeats: int) -> dict[str, dict[str, float]]:
    key = folder / "k.pem"
    public = generate_key(key)
    out: dict[str, dict[str, float]] = {}
    for role, source, load in (("detector", BUNDLED_DETECTOR, Detector),
                               ("wbc", BUNDLED_WBC_CLASSIFIER, Classifier)):
        model = folder / source.name
        shutil.copy(source, model)
        shutil.copy(source.with_suffix(".json"), model.with_suffix(".json"))
        sign_digest(model, verify_model(model).digest, load_private_key(key))
        row: dict[str, float] = {}
        for name, keys in (("load_ms", None), ("load_signed_ms", [public])):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                load(model, trusted_keys=keys)
                times.append((time.perf_counter() - t0) * 1e3)
            row[name] = round(statistics.median(times), 1)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            verify_model(model, [public])
            times.append((time.perf_counter() - t0) * 1e3)
        row["verify_signed_ms"] = round(statistics.median(times), 2)
        t0 = time.perf_counter()
        read_manifest(model.with_suffix(".json"))
        row["read_manifest_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        out[role] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--appends", type=int, default=500)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-figures-") as tmp:
        base = Path(tmp)
        for sub in ("appends", "verify", "models"):
            (base / sub).mkdir()
        report = {"append": appends(base / "appends", args.appends),
                  "verify": verification(base / "verify", args.events),
                  "model_load": model_loads(base / "models", args.repeats)}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
