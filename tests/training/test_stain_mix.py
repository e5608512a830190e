"""Stain mixing: the two dyes of a smear are recovered, a crop is re-rendered in another
smear's dyes, the bank script keeps colours only and leaves out excluded labs, and a bad bank
is a clear error."""

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

from training.stain_mix import Stain, StainBank, estimate, restain  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NUCLEAR = np.array([0.65, 0.70, 0.29])  # absorbs red and green: nuclei blue-purple
EOSIN = np.array([0.25, 0.90, 0.35])  # absorbs green most: red cells pink


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _smear(nuclear: np.ndarray, eosin: np.ndarray, size: int = 64) -> np.ndarray:
    """A white field whose pixels hold the two dyes in amounts that sweep from pure nuclear
    dye to pure eosin (with a white background row), drawn with the given dye vectors."""
    rng = np.random.default_rng(0)
    share = rng.uniform(0, 1, (size, size))
    amount = rng.uniform(0.3, 1.2, (size, size))
    amounts = np.stack([share * amount, (1 - share) * amount], axis=-1)
    amounts[:10] = 0.0  # background: the slide's white, more than its brightest tenth
    od = amounts @ np.stack([_unit(nuclear), _unit(eosin)])
    return np.exp(-od)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1, 1))))


def test_the_two_dyes_are_recovered_nuclear_first():
    stain = estimate(_smear(NUCLEAR, EOSIN))
    assert stain is not None
    assert _angle(stain.vectors[:, 0], NUCLEAR) < 3
    assert _angle(stain.vectors[:, 1], EOSIN) < 3


def test_a_blank_slide_has_no_stain():
    assert estimate(np.ones((64, 64, 3))) is None


def test_restaining_draws_the_same_dye_amounts_with_the_other_smears_colours():
    other_nuclear, other_eosin = np.array([0.3, 0.8, 0.5]), np.array([0.1, 0.6, 0.8])
    source = _smear(NUCLEAR, EOSIN)
    own = estimate(source)
    target = Stain(np.stack([_unit(other_nuclear), _unit(other_eosin)], axis=1), own.strength)
    out = restain(source, own, target)
    expected = _smear(other_nuclear, other_eosin)
    assert np.abs(out - expected).mean() < 0.02
    assert np.abs(source - expected).mean() > 0.05  # the colours did change
    assert np.abs(restain(source, own, own) - source).mean() < 0.01


def _bank(tmp_path: Path) -> Path:
    folder = tmp_path / "fields"
    (folder / "lab-a").mkdir(parents=True)
    for i in range(3):
        image = (_smear(NUCLEAR, EOSIN, 64) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / "lab-a" / f"f{i}.png"), image)
    excluded = (_smear(EOSIN, NUCLEAR, 48) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "held-out.png"), excluded)
    out = tmp_path / "bank.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "stain_bank.py"), str(folder),
                           "--exclude-size", "48x48", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


def test_the_bank_keeps_colours_and_leaves_out_excluded_sizes(tmp_path):
    record = json.loads(_bank(tmp_path).read_text())
    assert [s["images"] for s in record["sources"]] == [3]
    assert record["sources"][0]["excluded_or_unreadable"] == 1
    assert all("held-out" not in s["image"] for s in record["stains"])
    assert set(record["stains"][0]) == {"image", "vectors", "strength"}


def test_mixing_re_renders_the_picked_share_and_is_seeded(tmp_path):
    bank = StainBank(_bank(tmp_path))
    x = torch.from_numpy(_smear(EOSIN, NUCLEAR).astype(np.float32)).permute(2, 0, 1)
    batch = x.expand(16, -1, -1, -1).contiguous()
    none = bank.mix(batch, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(none, batch)
    every = bank.mix(batch, torch.Generator().manual_seed(0), p=1.0)
    changed = (every - batch).abs().flatten(1).mean(1) > 0.05
    assert bool(changed.all())
    again = bank.mix(batch, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(every, again)


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "hemascope-stain-bank/1",
                                                 "sources": [], "stains": []})])
def test_a_bad_bank_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bank.json"
    path.write_text(content)
    with pytest.raises(HemascopeError, match=r"stain bank|no usable stains") as err:
        StainBank(path)
    assert "scripts/stain_bank.py" in err.value.fix
