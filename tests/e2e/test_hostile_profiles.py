"""Hostile profiles through the real CLI (issue #20, finding 7): each gives one line naming the
problem and the fix, a non-zero exit, no traceback, and no session; none hangs or crashes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

TOKEN = "dev1." + "a" * 40
SYNC = '[sync]\nhub_url = "http://127.0.0.1:9/api"\ntoken_path = "token"\n'


def _text(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "p.toml").write_text(text)
        return folder / "p.toml"
    return make


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "p.toml").write_bytes(data)
        return folder / "p.toml"
    return make


def _directory(folder: Path) -> Path:
    (folder / "p.toml").mkdir()
    return folder / "p.toml"


def _symlink_loop(folder: Path) -> Path:
    (folder / "p.toml").symlink_to("p.toml")
    return folder / "p.toml"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "p.toml")
    return folder / "p.toml"


def _dev_zero(_: Path) -> Path:
    return Path("/dev/zero")


# (case, profile maker, command, what the one line must say); with a `sync` command the
# profile gets a hub URL and a valid token file beside it unless the case sets its own.
CASES = [
    ("invalid-utf8", _bytes(b'[device]\nname = "\xff\xfe"\n'), "run", "is not UTF-8 text"),
    ("utf16", _bytes('[device]\nname = "x"\n'.encode("utf-16")), "run", "is not UTF-8 text"),
    ("random-bytes", _bytes(bytes(range(256)) * 8), "run", "is not UTF-8 text"),
    ("directory", _directory, "run", "not a regular file but a folder"),
    ("symlink-loop", _symlink_loop, "run", "Too many levels of symbolic links"),
    ("fifo", _fifo, "run", "not a regular file but a FIFO"),
    ("dev-zero", _dev_zero, "run", "not a regular file but a device"),
    ("over-1-MB", _text("# " + "x" * 2**20 + "\n"), "run", "over the limit"),
    ("nested-5000-deep", _text("x = " + "[" * 5000 + "]" * 5000 + "\n"), "run",
     "nested too deeply"),
    ("nested-100-deep", _text("x = " + "[" * 100 + "]" * 100 + "\n"), "run",
     "nested too deeply"),
    ("huge-integer-literal", _text("[backend]\nthreads = " + "9" * 5000 + "\n"), "run",
     "not valid TOML"),
    ("threads-2**63", _text(f"[backend]\nthreads = {2**63 - 1}\n"), "run",
     "field 'backend.threads': Input should be less than or equal to 256"),
    ("threads-100000", _text("[backend]\nthreads = 100000\n"), "run",
     "field 'backend.threads'"),
    ("classifier-threads", _text("[classifiers]\nthreads = 100000\n"), "run",
     "field 'classifiers.threads'"),
    ("synthetic-abc", _text('[source]\ndefault = "synthetic:abc"\n'), "run",
     "unknown source 'synthetic:abc'"),
    ("camera-index-overflow", _text(f'[source]\ndefault = "camera:{2**70}"\n'), "run",
     "unknown source"),
    ("negative-seed", _text("[source]\nsynthetic_seed = -1\n"), "run",
     "field 'source.synthetic_seed'"),
    ("nan", _text("[qc]\nmin_focus = nan\n"), "run", "field 'qc.min_focus': Input should be "
     "a finite number"),
    ("long-device-name", _text(f'[device]\nname = "{"a" * 5000}"\n'), "run",
     "field 'device.name'"),
    ("null-byte-path", _text('[storage]\ndata_dir = "a\\u0000b"\n'), "run",
     "field 'storage.data_dir': unusable path"),
    ("unknown-home", _text('[storage]\ndata_dir = "~no-such-user-here/x"\n'), "run",
     "field 'storage.data_dir': unusable path"),
    ("timeout-inf", _text(SYNC.replace("[sync]\n", "[sync]\ntimeout_s = inf\n")), "sync",
     "field 'sync.timeout_s': Input should be a finite number"),
    ("timeout-huge", _text(SYNC.replace("[sync]\n", "[sync]\ntimeout_s = 1e300\n")), "sync",
     "field 'sync.timeout_s'"),
    ("token-dev-zero", _text(SYNC.replace('"token"', '"/dev/zero"')), "sync",
     "hub token /dev/zero is unusable (not a regular file but a device)"),
    ("token-fifo", _text(SYNC.replace('"token"', '"fifo"')), "sync",
     "is unusable (not a regular file but a FIFO)"),
    ("ca-file-dev-zero", _text(SYNC.replace("http:", "https:") + 'ca_file = "/dev/zero"\n'),
     "sync", "sync.ca_file /dev/zero is unusable (not a regular file but a device)"),
    ("hub-url-broken-ipv6", _text(SYNC.replace("127.0.0.1:9", "[::1")), "sync",
     "is not an http(s) URL"),
    ("invalid-utf8-sync", _bytes(b'[device]\nname = "\xff"\n'), "sync", "is not UTF-8 text"),
    ("fifo-doctor", _fifo, "doctor", "not a regular file but a FIFO"),
    ("deep-doctor", _text("x = " + "[" * 5000 + "]" * 5000 + "\n"), "doctor",
     "nested too deeply"),
    ("synthetic-abc-doctor", _text('[source]\ndefault = "synthetic:abc"\n'), "doctor",
     "unknown source 'synthetic:abc'"),
]


@pytest.mark.parametrize(("make", "command", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_profile_is_one_line_and_no_session(tmp_path, make, command, says):
    os.mkfifo(tmp_path / "fifo")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    profile = make(tmp_path)
    data = tmp_path / "data"
    args = {"run": ["run", "-p", str(profile), "--data-dir", str(data)],
            "sync": ["sync", "-p", str(profile), "--data-dir", str(data)],
            "doctor": ["doctor", "-p", str(profile)]}[command]
    done = run_cli(*args, timeout=120, env={"COLUMNS": "2000"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    if command == "doctor":  # a table: the profile or the source fails, the device is not ready
        assert says in done.stdout.replace("\n", " ")
        assert "not ready" in done.stdout
    else:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert says in lines[0] and " — " in lines[0]
    database = data / "hemascope.db"
    if database.exists():
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0
