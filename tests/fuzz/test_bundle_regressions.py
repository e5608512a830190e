"""What fuzzing found in USB bundle import (issue #20), through the real hub command: each is
one line naming the problem, exit 2, and nothing stored."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import pytest

from scripts.fuzz_bundles import MEMBERS, TOKEN
from tests.conftest import ROOT


def _import(bundle, db) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "import-bundle", str(bundle), "--db",
                           str(db)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _bundle(tmp_path, members=MEMBERS, method=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path = tmp_path / "hemascope-dev-1.zip"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture
def hub_db(tmp_path):
    from hub.db import HubDB

    db = tmp_path / "hub.db"
    HubDB(str(db)).add_device("fuzz-device", TOKEN)
    return db


def _refused(done, says):
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_a_sha256_file_that_is_not_text_is_a_mismatch(tmp_path, hub_db):
    bundle = _bundle(tmp_path)
    bundle.with_name(bundle.name + ".sha256").write_bytes(b"\xbb\xd5\xff")
    _refused(_import(bundle, hub_db), "does not match its .sha256")


def test_an_empty_sha256_file_is_a_mismatch(tmp_path, hub_db):
    bundle = _bundle(tmp_path)
    bundle.with_name(bundle.name + ".sha256").write_bytes(b"")
    _refused(_import(bundle, hub_db), "does not match its .sha256")


def test_deflate_data_that_does_not_decode_is_damage(tmp_path, hub_db):
    bundle = _bundle(tmp_path)
    data = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as zf:
        info = zf.getinfo("manifest.json")
    start = info.header_offset + 30 + len(info.filename.encode())
    data[start:start + 8] = b"\xff" * 8  # the member's compressed bytes
    bundle.write_bytes(bytes(data))
    _refused(_import(bundle, hub_db), "is damaged")


def test_a_fifo_named_like_a_bundle_does_not_hang(tmp_path, hub_db):
    fifo = tmp_path / "hemascope-dev-1.zip"
    os.mkfifo(fifo)
    _refused(_import(fifo, hub_db), "is not a bundle file")
