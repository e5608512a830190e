"""Issue #20, finding 10, in process: the hub checks a payload in bounded memory, and decides
exactly as checking it whole would.

`whole_body_verdict` is the hub's previous check (the body decoded whole, re-encoded and
validated as one `SessionPayload`): the streaming check must accept and refuse the same
payloads, on the golden payload and on seeded random damage to it.
"""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from typing import Any

import pytest
from pydantic import ValidationError

from edge.sync.models import PAYLOAD_SCHEMA, SessionPayload, canonical_json
from hub.payloads import FIELD_MAX_CHARS, HEAD_MAX_CHARS, Rejected, validate
from tests.helpers.golden import FIXTURES, SESSION_ID
from tests.helpers.sync import large_payload


def whole_body_verdict(key: str, version: int, body: bytes) -> bool:
    """Accepted by the check that decodes the body whole (the reference)."""
    try:
        obj = json.loads(body)
        if canonical_json(obj) != body:
            return False
        if isinstance(obj, dict) and obj.get("schema") != PAYLOAD_SCHEMA:
            return False
        payload = SessionPayload.model_validate(obj)
    except (ValueError, ValidationError, RecursionError):
        return False
    return (payload.key, payload.version) == (key, version)


def streaming_verdict(key: str, version: int, body: bytes) -> bool:
    try:
        validate(key, version, hashlib.sha256(body).hexdigest(), body)
    except Rejected:
        return False
    return True


def _golden() -> dict[str, Any]:
    return json.loads((FIXTURES / "payload-v1.json").read_bytes())


def _paths(obj: Any, where: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON object."""
    found = [where]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, (*where, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _paths(v, (*where, i))
    return found


REPLACEMENTS = [None, True, 0, -1, 1, 2**31, 2**63, 0.5, 1e300, "", "x", "pseudo:00", [], {},
                [[]], {"a": 1}, ["WBC", 0.5, 1.0, 2.0, 3.0, 4.0], "0" * 64]


def _damaged(rng: random.Random) -> bytes:
    """The golden payload with one seeded change: a value replaced, a key dropped or added,
    or the text itself cut, spaced or altered."""
    payload = _golden()
    kind = rng.randrange(5)
    if kind < 3:
        path = rng.choice(_paths(payload)[1:])
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if kind == 0:
            parent[path[-1]] = rng.choice(REPLACEMENTS)
        elif kind == 1 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["zz", "a", "fields", "idx", "extra"])] = rng.choice(REPLACEMENTS)
        return canonical_json(payload)
    text = canonical_json(payload)
    at = rng.randrange(len(text))
    if kind == 3:
        return text[:at]
    return text[:at] + rng.choice([b" ", b"\n", b",", b"]", b"}", b"{", b'"', b"0", b"\xc3\xa9"]
                                  ) + text[at + rng.randrange(2):]


def test_the_streaming_check_decides_as_the_whole_body_check_on_damaged_payloads():
    rng = random.Random(20)
    body = canonical_json(_golden())
    assert streaming_verdict(SESSION_ID, 1, body) and whole_body_verdict(SESSION_ID, 1, body)
    seen = {True: 0, False: 0}
    for _ in range(600):
        damaged = _damaged(rng)
        verdict = whole_body_verdict(SESSION_ID, 1, damaged)
        assert streaming_verdict(SESSION_ID, 1, damaged) == verdict, damaged[:300]
        seen[verdict] += 1
    assert min(seen.values()) > 100  # both verdicts were exercised, many times


def _peak_bytes(body: bytes) -> tuple[bool, int]:
    """(accepted, peak Python memory) of checking `body` (the golden session's key)."""
    tracemalloc.start()
    try:
        accepted = streaming_verdict(SESSION_ID, 1, body)
        return accepted, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_payload_is_checked_in_a_small_multiple_of_its_size():
    body = large_payload(_golden(), SESSION_ID, 6 * 2**20, cells_per_field=200)
    accepted, peak = _peak_bytes(body)
    # decoded whole it took about 9 times its size; read piece by piece, about one copy
    assert accepted and peak < 2 * len(body), peak / len(body)


@pytest.mark.parametrize("where", ["summary", "profile", "field", "field_summary"])
def test_a_piece_over_its_limit_is_refused_before_it_is_decoded(where):
    payload = _golden()
    bomb = [{}] * 2**22  # 12 MB of JSON, 20 times that as objects if decoded whole
    if where == "summary":
        payload["summary"]["telemetry"] = bomb
    elif where == "profile":
        payload["profile"] = {"junk": bomb}
    elif where == "field":
        payload["fields"][0]["cells"] = bomb
    else:
        payload["summary"]["fields"][0]["junk"] = bomb
    body = canonical_json(payload)
    with pytest.raises(Rejected, match="is over 1 MB"):
        validate(SESSION_ID, 1, hashlib.sha256(body).hexdigest(), body)
    accepted, peak = _peak_bytes(body)
    # one copy of the body, and at most one piece's slice decoded (a 1 MB slice of empty
    # objects is about 26 MB of them): not a multiple of the body
    assert not accepted and peak < len(body) + 32 * max(HEAD_MAX_CHARS, FIELD_MAX_CHARS), \
        peak / len(body)
