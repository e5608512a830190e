"""Fuzz device profiles through the loader `run`, `doctor` and `sync` use (issue #20); writes JSON.

Cases (hypothesis, seeded): TOML documents made of the profile's own sections and keys and of
random ones, with values of every TOML type (huge integers, inf and nan, unicode, deep
nesting, hostile paths: /dev/zero, a FIFO, a folder, a symlink loop, NUL bytes, ~nobody);
shipped profiles with bytes flipped, cut or grown; and random bytes. Each is written to a
file and loaded with `load_profile`; a loaded profile then goes through what the commands
do with it first (source spec, hub URL, token and CA files, threads, stop rule, flags).
A refusal is a HemascopeError (the one-line error); anything else is a traceback.

  python scripts/fuzz_profiles.py --cases 10000 --seed 0 --json docs/bench/fuzz-profiles.json
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from edge.capture.sources import parse_spec
from edge.config import Profile, load_profile
from edge.core.errors import HemascopeError
from edge.sync.client import endpoint, read_token, tls_context
from scripts.fuzzing import EDGE_FLOATS, EDGE_INTS, Campaign, flipped, run_script, workdir

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "firmware_config" / "profiles").glob("*.toml"))
WORK = workdir("profiles")
TOKEN = "dev1." + "a" * 40


def _hostile_files() -> list[str]:
    """Paths a profile may point at: special files in WORK, and a few system ones."""
    os.mkfifo(WORK / "fifo")
    (WORK / "folder").mkdir()
    (WORK / "loop").symlink_to("loop")
    (WORK / "token").write_text(TOKEN + "\n")
    (WORK / "token").chmod(0o600)
    (WORK / "open-token").write_text(TOKEN + "\n")
    (WORK / "open-token").chmod(0o644)
    (WORK / "binary").write_bytes(bytes(range(256)))
    return [str(WORK / n) for n in ("fifo", "folder", "loop", "token", "open-token", "binary")] + [
        "/dev/zero", "/dev/null", "/proc/self/mem", "/", "~nobody-here/x", "~", "a\0b", "",
        "../" * 50, "x" * 5000, "relative/model.onnx"]


HOSTILE = _hostile_files()


def _sections() -> dict[str, list[str]]:
    """Profile sections (dotted for nested ones) and their keys."""
    found: dict[str, list[str]] = {}

    def walk(prefix: str, model: type[BaseModel]) -> None:
        keys = found.setdefault(prefix, [])
        for key, f in model.model_fields.items():
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                walk(f"{prefix}.{key}", f.annotation)
            else:
                keys.append(key)

    for name, f in Profile.model_fields.items():
        walk(name, f.annotation)  # type: ignore[arg-type]
    return found


SECTIONS = _sections()
SPECS = st.one_of(st.sampled_from(["synthetic", "camera:0", "picamera", "video:x.mp4"]),
                  st.builds(lambda k, a: f"{k}:{a}", st.sampled_from(
                      ["synthetic", "camera", "picamera", "folder", "video", "nope", ""]),
                      st.one_of(st.text(max_size=20), st.integers().map(str))))
URLS = st.one_of(st.sampled_from(["http://127.0.0.1:9/api", "https://hub.example/api",
                                  "http://[::1", "http://h:99999/", "ftp://x", "http://",
                                  "https://a:0/"]), st.text(max_size=30))


def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(st.booleans(), st.integers(), st.sampled_from(EDGE_INTS), st.floats(),
                     st.sampled_from([*EDGE_FLOATS, float("inf"), float("nan")]),
                     st.text(max_size=30), st.sampled_from(HOSTILE), SPECS, URLS,
                     st.datetimes(), st.dates(), st.times())


VALUES = st.recursive(_scalar(), lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=6)


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """A TOML literal of a value (strings as basic strings, JSON escapes being TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr gives inf, -inf and nan: TOML's spelling
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat()  # datetime, date, time


def _nested(depth: int) -> str:
    return "x = " + "[" * depth + "]" * depth + "\n"


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A TOML document of known and random sections, known and random keys, any values."""
    lines = []
    names = draw(st.lists(st.one_of(st.sampled_from(sorted(SECTIONS)), st.text(max_size=8)),
                          max_size=5, unique=True))
    for name in names:
        lines.append("[" + ".".join(toml_key(p) for p in name.split(".")) + "]")
        known = SECTIONS.get(name, [])
        keys = draw(st.lists(st.one_of(st.sampled_from(known), st.text(max_size=8))
                             if known else st.text(max_size=8), max_size=5, unique=True))
        lines += [f"{toml_key(k)} = {toml_value(draw(VALUES))}" for k in keys]
    if draw(st.integers(0, 20)) == 0:
        lines.append(_nested(draw(st.sampled_from([9, 50, 500, 5000]))))
    return ("\n".join(lines) + "\n").encode()


@st.composite
def edited(draw: st.DrawFn) -> bytes:
    """A shipped profile with one to three known keys set to any value."""
    doc = tomllib.loads(draw(st.sampled_from(SHIPPED)).read_text())
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(n for n in SECTIONS if SECTIONS[n])))
        table = doc
        for part in name.split("."):
            table = table.setdefault(part, {})
        table[draw(st.sampled_from(SECTIONS[name]))] = draw(_scalar())
    return _toml_document(doc).encode()


def _toml_document(doc: dict[str, Any]) -> str:
    """Top-level keys as `key = value` lines (tables inline)."""
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


PROFILES = st.one_of(
    structured(), edited(), edited(),
    st.sampled_from(SHIPPED).map(Path.read_bytes).flatmap(flipped),
    st.binary(max_size=2000),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")))


def check(data: bytes) -> str:
    """Load the profile from a file, then use it as the commands do."""
    path = WORK / "profile.toml"
    path.write_bytes(data)
    profile = load_profile(path)
    parse_spec(profile.source.default)
    profile.backend.inference_threads()
    profile.protocol.stop_protocol()
    profile.protocol.flags.thresholds()
    if profile.sync.hub_url is not None:
        endpoint(profile.sync.hub_url)
    if profile.sync.token_path is not None:
        read_token(profile.sync.token_path)
    if profile.sync.ca_file is not None:
        tls_context(profile.sync.ca_file)
    return "loaded and used"


def campaign() -> Campaign:
    return Campaign("profiles", (HemascopeError,))


def main() -> None:
    run_script(__doc__, campaign(), PROFILES, check)


if __name__ == "__main__":
    main()
