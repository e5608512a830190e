"""The device secret and the pseudonyms made with it."""

import os
import stat
import subprocess
import sys

import pytest

from edge.core.errors import HemascopeError
from edge.storage import layout
from edge.storage.pseudonyms import device_secret, is_pseudonym, pseudonym
from tests.conftest import ROOT


def test_pseudonyms_are_keyed_stable_and_differ_by_kind():
    a, b = bytes(32), bytes(range(32))
    assert pseudonym(a, "sample", "S-1") == pseudonym(a, "sample", "S-1")
    assert pseudonym(a, "sample", "S-1") != pseudonym(b, "sample", "S-1")
    assert pseudonym(a, "sample", "S-1") != pseudonym(a, "operator", "S-1")
    assert pseudonym(a, "sample", "S-1") != pseudonym(a, "sample", "S-2")
    assert is_pseudonym(pseudonym(a, "sample", "S-1")) and not is_pseudonym("S-1")


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_processes_making_the_secret_at_once_share_one_made_0600(tmp_path, umask):
    code = ("import sys; from pathlib import Path; from edge.storage.pseudonyms import "
            "device_secret; sys.stdout.write(device_secret(Path(sys.argv[1])).hex())")
    old = os.umask(umask)
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for _ in range(6)]
        secrets = {p.communicate(timeout=60)[0] for p in procs}
    finally:
        os.umask(old)
    assert len(secrets) == 1 and len(bytes.fromhex(secrets.pop())) == 32
    assert stat.S_IMODE((tmp_path / layout.DEVICE_SECRET).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [layout.DEVICE_SECRET]  # no temporary left


def test_a_damaged_secret_is_a_clear_error_not_new_pseudonyms(tmp_path):
    (tmp_path / layout.DEVICE_SECRET).write_bytes(b"short")
    with pytest.raises(HemascopeError, match=r"device secret .* is damaged") as err:
        device_secret(tmp_path)
    assert "backup" in err.value.fix
    assert (tmp_path / layout.DEVICE_SECRET).read_bytes() == b"short"  # left for restoring
