"""Unlabelled crops in training (FixMatch): only sure guesses teach, and a run records them."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.core.errors import HemascopeError  # noqa: E402
from tests.conftest import offline_env, run_cli  # noqa: E402
from training.unlabelled import THRESHOLD, consistency_loss, load_unlabelled  # noqa: E402


class _Fixed(torch.nn.Module):
    """Logits given per crop by its first pixel (the test sets them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0] * 10.0


def test_only_sure_guesses_become_targets() -> None:
    weak = torch.zeros(4, 3, 2, 2)
    weak[0, 0, 0, 0] = 1.0  # sure: class 0
    weak[1, 2, 0, 0] = 1.0  # sure: class 2
    weak[2, :, 0, 0] = torch.tensor([0.1, 0.0, 0.0])  # unsure
    weak[3, :, 0, 0] = torch.tensor([0.0, 0.05, 0.0])  # unsure
    assert torch.softmax(_Fixed()(weak), 1).max(1).values[:2].min() >= THRESHOLD
    assert torch.softmax(_Fixed()(weak), 1).max(1).values[2:].max() < THRESHOLD
    strong = weak.clone()
    loss, sure = consistency_loss(_Fixed(), weak, strong)
    assert sure == 0.5
    agreeing = loss.item()
    strong[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # its strong view now says class 1
    assert consistency_loss(_Fixed(), weak, strong)[0].item() > agreeing + 1.0
    strong = weak.clone()
    strong[2, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0])  # an unsure crop's strong view: no effect
    assert consistency_loss(_Fixed(), weak, strong)[0].item() == pytest.approx(agreeing)


def test_an_empty_folder_or_a_corrupt_crop_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HemascopeError, match="no images there"):
        load_unlabelled(tmp_path, 32)
    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((40, 40, 3), np.uint8))
    assert load_unlabelled(tmp_path, 32).shape == (1, 32, 32, 3)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(HemascopeError, match=r"broken\.png cannot be read"):
        load_unlabelled(tmp_path, 32)


def test_a_run_with_unlabelled_crops_records_them(tmp_path: Path) -> None:
    from tests.training.test_classify import _tiny_all

    tiny = _tiny_all(tmp_path)
    crops = tmp_path / "unlabelled"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(crops / f"c{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    run = tmp_path / "run"
    done = run_cli("train", "classify", str(tiny), "--out", str(run), "--arch", "smallnet",
                   "--epochs", "1", "--imgsz", "32", "--batch", "8", "--unlabelled", str(crops),
                   env=offline_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["unlabelled"] == str(crops)
    assert manifest["config"]["unlabelled_crops"] == 6
    row = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert 0.0 <= row["unlabelled_sure"] <= 1.0
    resumed = run_cli("train", "classify", str(tiny), "--out", str(run), "--arch", "smallnet",
                      "--epochs", "2", "--imgsz", "32", "--batch", "8", "--resume",
                      env=offline_env(tmp_path))
    assert resumed.returncode != 0
    assert "--unlabelled" in resumed.stderr
