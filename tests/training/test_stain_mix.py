"""Stain mixing: the bank script keeps colours only and leaves out excluded labs, training
crops are redrawn in the bank's stains, and a bad bank is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.errors import HemascopeError

torch = pytest.importorskip("torch", reason="needs the train extra")

from tests.helpers.dyes import EOSIN, NUCLEAR, smear  # noqa: E402
from training.stain_mix import StainBank  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory) -> Path:
    """A bank written by the script from three fields of one lab and one excluded field."""
    tmp_path = tmp_path_factory.mktemp("bank")
    folder = tmp_path / "fields"
    (folder / "lab-a").mkdir(parents=True)
    for i in range(3):
        image = (smear(NUCLEAR, EOSIN, 64) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / "lab-a" / f"f{i}.png"), image)
    excluded = (smear(EOSIN, NUCLEAR, 48) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "held-out.png"), excluded)
    out = tmp_path / "bank.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "stain_bank.py"), str(folder),
                           "--exclude-size", "48x48", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


def test_the_bank_keeps_colours_and_leaves_out_excluded_sizes(bank_file):
    record = json.loads(bank_file.read_text())
    assert [s["images"] for s in record["sources"]] == [3]
    assert record["sources"][0]["excluded_or_unreadable"] == 1
    assert all("held-out" not in s["image"] for s in record["stains"])
    assert set(record["stains"][0]) == {"image", "vectors", "strength"}


def test_mixing_re_renders_the_picked_share_and_is_seeded(bank_file):
    bank = StainBank(bank_file)
    x = torch.from_numpy(smear(EOSIN, NUCLEAR).astype(np.float32)).permute(2, 0, 1)
    batch = x.expand(16, -1, -1, -1).contiguous()
    none = bank.mix(batch, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(none, batch)
    every = bank.mix(batch, torch.Generator().manual_seed(0), p=1.0)
    changed = (every - batch).abs().flatten(1).mean(1) > 0.05
    assert bool(changed.all())
    again = bank.mix(batch, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(every, again)


@pytest.mark.parametrize("content", ["not json", "[]", json.dumps({"format": "other"}),
                                     json.dumps({"format": "hemascope-stain-bank/1",
                                                 "stains": []}),
                                     json.dumps({"format": "hemascope-stain-bank/1",
                                                 "sources": [], "stains": []})])
def test_a_bad_bank_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bank.json"
    path.write_text(content)
    with pytest.raises(HemascopeError, match=r"stain bank|no usable stains") as err:
        StainBank(path)
    assert "scripts/stain_bank.py" in err.value.fix
