"""Fuzz USB bundles at the hub's `import-bundle` (issue #20); writes JSON.

A real bundle is made once: `hemascope run` (synthetic fields) into a device data dir, then
`export_bundle` signs its payloads with the device's key. Cases (hypothesis, seeded): that
bundle rebuilt with its manifest edited (one to three edits) and signed again with the right
key (or not), with a payload edited and its checksum in the manifest made right, with a
member dropped or an unexpected one added, or stored with another compression; its bytes
flipped, cut or grown; its `.sha256` beside it garbled; random bytes. Each is imported with
the real hub command (`hemascope-hub import-bundle`, in-process through typer's runner, on
a real SQLite hub database where the device is enrolled). A refusal is a HemascopeError (the
command's one-line error); anything else is a traceback.

  python scripts/fuzz_bundles.py --cases 10000 --seed 0 --json docs/bench/fuzz-bundles.json
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.core.errors import HemascopeError
from edge.storage.store import Store
from edge.sync.bundle import _sign, export_bundle
from edge.sync.client import bundle_key
from edge.sync.models import canonical_json
from hub.cli import app as hub_app
from hub.db import HubDB
from scripts.fuzzing import Campaign, flipped, mutated, run_script, workdir

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "fuzz-device." + "b" * 43
WORK = workdir("bundles")
HUB_DB = WORK / "hub.db"
RUNNER = CliRunner()


def _real_bundle() -> dict[str, bytes]:
    """The members of a bundle exported from a real run."""
    subprocess.run([sys.executable, "-m", "edge", "run", "--data-dir", str(WORK / "device")],
                   cwd=ROOT, check=True, capture_output=True)
    made = export_bundle(Store.open(WORK / "device"), TOKEN, WORK / "stick")
    assert made is not None
    HubDB(str(HUB_DB)).add_device("fuzz-device", TOKEN)
    with zipfile.ZipFile(made[0]) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


MEMBERS = _real_bundle()
MANIFEST = json.loads(MEMBERS["manifest.json"])
PAYLOADS = sorted(n for n in MEMBERS if n.startswith("payloads/"))


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _signed(members: dict[str, bytes], manifest: Any, sign: bool) -> dict[str, bytes]:
    try:
        raw = canonical_json(manifest)
    except (ValueError, TypeError):  # nan, inf: written as Python does
        raw = json.dumps(manifest).encode()
    members = {**members, "manifest.json": raw}
    if sign:
        members["manifest.sig"] = _sign(bundle_key(TOKEN), raw).encode()
    return members


@st.composite
def _edited_payload(draw: st.DrawFn) -> dict[str, bytes]:
    """A payload edited, and the manifest's checksum of it made right, signed."""
    name = draw(st.sampled_from(PAYLOADS))
    doc = draw(mutated(json.loads(MEMBERS[name])))
    try:
        body = canonical_json(doc)
    except (ValueError, TypeError):
        body = json.dumps(doc).encode()
    manifest = json.loads(json.dumps(MANIFEST))
    for entry in manifest["payloads"]:
        if entry["path"] == name:
            entry.update(sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    return _signed({**MEMBERS, name: body}, manifest, sign=True)


@st.composite
def _members_changed(draw: st.DrawFn) -> dict[str, bytes]:
    members = dict(MEMBERS)
    if draw(st.booleans()):
        members.pop(draw(st.sampled_from(sorted(members))))
    else:
        name = draw(st.sampled_from(["../evil", "payloads/x.json", "/abs", "manifest.json/x"]))
        members[name] = draw(st.binary(max_size=100))
    return members


BUNDLES = st.one_of(
    st.builds(_signed, st.just(MEMBERS), mutated(MANIFEST), st.booleans()).map(_zip),
    _edited_payload().map(_zip),
    _members_changed().map(_zip),
    st.just(MEMBERS).map(lambda m: _zip(m, zipfile.ZIP_STORED)),
    st.just(_zip(MEMBERS)).flatmap(flipped),
    st.binary(max_size=2000)).flatmap(
    lambda z: st.tuples(st.just(z), st.one_of(
        st.none(), st.just("right"), st.binary(max_size=80), st.text(max_size=80))))


def check(case: tuple[bytes, Any]) -> str:
    """Write the bundle (and its .sha256 when the case has one), import it at the hub."""
    data, side = case
    path = WORK / "stick" / "hemascope-fuzz.zip"
    path.write_bytes(data)
    sha = path.with_name(path.name + ".sha256")
    sha.unlink(missing_ok=True)
    if side == "right":
        sha.write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    elif isinstance(side, bytes):
        sha.write_bytes(side)
    elif isinstance(side, str):
        sha.write_text(side)
    result = RUNNER.invoke(hub_app, ["import-bundle", str(path), "--db", str(HUB_DB)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return f"imported (exit {result.exit_code})"


def campaign() -> Campaign:
    return Campaign("bundles", (HemascopeError,))


def main() -> None:
    run_script(__doc__, campaign(), BUNDLES, check)


if __name__ == "__main__":
    main()
