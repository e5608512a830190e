"""Fuzz sync uploads at the hub under a valid device token (issue #20); writes JSON.

The hub's real app (`hub.app.create_app`) runs in-process on a real SQLite database, called
through Starlette's TestClient (which re-raises any exception of the app). Cases (hypothesis,
seeded): the golden payload (tests/fixtures/payload-v1.json) with one to three edits, sent in
a valid envelope with its right sha256 (or a wrong one) under a version from the integer
edges; envelopes with edited fields; any JSON value as the whole request; the bytes of a
valid request flipped, cut or grown. Every answer must be 200, 413 or 422 (a 4xx the hub
means); a 500 or an exception is a traceback.

  python scripts/fuzz_hub.py --cases 10000 --seed 0 --json docs/bench/fuzz-hub.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from starlette.testclient import TestClient

from edge.sync.models import canonical_json
from hub.app import create_app
from hub.db import HubDB
from scripts.fuzzing import (
    EDGE_INTS,
    Campaign,
    flipped,
    json_values,
    masked,
    mutated,
    run_script,
    workdir,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "payload-v1.json").read_bytes())
TOKEN = "fuzz-device." + "f" * 43
WORK = workdir("hub")


def _client() -> TestClient:
    db = HubDB(str(WORK / "hub.db"))
    db.add_device("fuzz-device", TOKEN)
    return TestClient(create_app(db), headers={"Authorization": f"Bearer {TOKEN}",
                                               "Content-Type": "application/json"})


CLIENT = _client()


def _fresh(doc: Any, key: str) -> Any:
    """The document under a new session key (so it can be stored, not a conflict)."""
    if isinstance(doc, dict) and isinstance(doc.get("summary"), dict):
        doc["key"] = doc["summary"]["session_id"] = key
    return doc


def _upload(doc: Any, version: int, right_sha: bool) -> bytes:
    try:
        body = canonical_json(doc)
    except ValueError:  # nan or inf: sent as Python writes them (not JSON)
        body = json.dumps(doc).encode()
    sha = hashlib.sha256(body).hexdigest() if right_sha else "0" * 64
    key = doc.get("key") if isinstance(doc, dict) else None
    return json.dumps({"payloads": [{"key": key if isinstance(key, str) else "k", "version":
                                     version, "sha256": sha, "body": body.decode("latin-1")}]}
                      ).encode()


VALID = _upload(GOLDEN, 1, True)
REQUESTS = st.one_of(
    st.builds(_upload, mutated(GOLDEN), st.one_of(st.just(1), st.sampled_from(EDGE_INTS)),
              st.booleans()),
    st.builds(_upload, st.builds(_fresh, mutated(GOLDEN), st.uuids().map(lambda u: u.hex)),
              st.just(1), st.just(True)),
    mutated(json.loads(VALID), max_edits=2).map(lambda d: json.dumps(d).encode()),
    json_values().map(lambda v: json.dumps(v).encode()),
    flipped(VALID))


def check(request: bytes) -> str:
    """POST one upload; the answer must be one the hub means."""
    answer = CLIENT.post("/api/v1/payloads", content=request)
    if answer.status_code not in (200, 413, 422):
        raise AssertionError(f"hub answered {answer.status_code}: {answer.text[:200]}")
    if answer.status_code == 200:
        return "200: " + ", ".join(sorted({r["status"] for r in answer.json()["results"]}))
    detail = answer.json()
    first = (detail.get("rejected") or [{}])[0].get("error", detail["detail"])
    return f"{answer.status_code}: {masked(first)[:70]}"


def campaign() -> Campaign:
    return Campaign("hub", ())


def main() -> None:
    run_script(__doc__, campaign(), REQUESTS, check)


if __name__ == "__main__":
    main()
