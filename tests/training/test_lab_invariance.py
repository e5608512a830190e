"""Lab invariance in training: the adversary's reversed gradient, which classes are judged,
that the class-mean gap removes a lab's signature from an embedding, and how a run records
both."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.errors import HemascopeError

torch = pytest.importorskip("torch", reason="needs the train extra")

from training.classify_data import Source  # noqa: E402
from training.classify_train import ClassifyTrainConfig, train_classifier  # noqa: E402
from training.lab_invariance import (  # noqa: E402
    LabAdversary,
    class_mean_gap,
    ramp,
    reverse_gradient,
    shared_classes,
)


def test_the_reversed_gradient_is_negated_and_scaled_and_the_forward_untouched():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -1.0]))
    assert ramp(0.0) == 0.0 and 0.99 < ramp(1.0) <= 1.0 and ramp(0.2) < ramp(0.5)


def test_only_classes_two_labs_share_are_judged():
    labels = torch.tensor([0, 0, 1, 2, 2])
    labs = torch.tensor([0, 1, 0, 1, 1])  # class 0 in both labs, 1 and 2 in one each
    shared = shared_classes(labels, labs, 3)
    assert shared.tolist() == [True, False, False]
    adversary = LabAdversary(4, 3, 2, shared)
    emb = torch.randn(3, 4, requires_grad=True)
    loss = adversary.loss(emb, torch.tensor([1, 2, 2]), torch.tensor([0, 1, 1]), 1.0)
    loss.backward()
    assert loss.item() == 0.0 and not emb.grad.any()  # nothing to judge: no pull at all
    emb.grad = None
    adversary.loss(emb, torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]), 1.0).backward()
    assert emb.grad[0].any() and emb.grad[2].any() and not emb.grad[1].any()


def _lab_weight_after_training(align: float) -> float:
    """A linear encoder of (class cue, lab cue, noise) trained to classify, with the
    class-mean gap at weight `align`; returns how much of the lab cue its embedding keeps,
    relative to the class cue."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    encoder, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=0.02)
    for _ in range(400):
        label = torch.randint(0, 2, (64,), generator=gen)
        lab = torch.randint(0, 2, (64,), generator=gen)
        x = torch.stack([label * 2.0 - 1, lab * 2.0 - 1, torch.randn(64, generator=gen)], 1)
        emb = encoder(x)
        loss = torch.nn.functional.cross_entropy(head(emb), label)
        loss = loss + align * class_mean_gap(emb, label, lab, torch.tensor([True, True]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = encoder.weight.detach()
    return float(w[:, 1].norm() / w[:, 0].norm())


def test_the_class_mean_gap_erases_a_labs_signature_from_the_embedding():
    without, aligned = _lab_weight_after_training(0.0), _lab_weight_after_training(1.0)
    assert without > 0.2  # nothing makes a plain classifier drop the lab cue
    assert aligned < 0.05 * without


def test_the_class_mean_gap_compares_labs_within_a_class_only():
    shared = torch.tensor([True, True, False])
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 5.0], [0.0, 5.0], [9.0, 9.0]],
                       requires_grad=True)
    label, lab = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 0])
    gap = class_mean_gap(emb, label, lab, shared)
    # class 0: labs at 0 and 2 on x (gap 1 each from their centre); class 1 agrees; class 2
    # has one lab: the mean of (1, 0) over the batch variance
    variance = emb.detach().var(dim=0).sum()
    assert gap.item() == pytest.approx(0.5 / variance.item())
    gap.backward()
    assert emb.grad[0, 0] < 0 < emb.grad[1, 0]  # the two labs of class 0 pulled together
    # scale-free: shrinking the whole embedding neither lowers the gap nor is pulled for
    assert class_mean_gap(emb.detach() * 0.1, label, lab, shared).item() == \
        pytest.approx(gap.item())
    assert float((emb.grad * emb.detach()).sum()) == pytest.approx(0.0, abs=1e-6)
    assert class_mean_gap(emb, torch.tensor([2, 2, 2, 2, 2]), lab, shared).item() == 0.0


def _lab(root: Path, tint: int) -> Path:
    """Two classes told apart by the size of a purple disc, in a lab-specific tint."""
    rng = np.random.default_rng(tint)
    for name, radius in (("small", 5), ("large", 12)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            image = np.full((32, 32, 3), (200 - tint, 200, 200), np.uint8)
            cv2.circle(image, (16, 16), radius, (140, 40, 120), -1)
            noisy = image.astype(int) + rng.integers(0, 25, image.shape)
            cv2.imwrite(str(root / name / f"{i}.png"), np.clip(noisy, 0, 255).astype(np.uint8))
    return root


class _Killed(Exception):
    pass


def _kill(epoch: int, total: int, row: dict) -> None:
    raise _Killed


def test_a_run_logs_the_adversary_and_a_resume_must_keep_it(tmp_path):
    sources = [Source(_lab(tmp_path / "one", 0)), Source(_lab(tmp_path / "two", 80))]
    run = tmp_path / "run"
    cfg = ClassifyTrainConfig(sources, run, arch="smallnet", imgsz=32, epochs=2, batch=8,
                              val_fraction=0.3, lab_adversary=1.0)
    with pytest.raises(_Killed):  # stopped after its first checkpoint
        train_classifier(cfg, progress=_kill)
    assert "adversary" in torch.load(run / "train" / "weights" / "last.pt", weights_only=True)
    for option in ("lab_adversary", "lab_align"):
        other = ClassifyTrainConfig(**{**cfg.__dict__, option: 0.5})
        with pytest.raises(HemascopeError, match=f"trained with --{option.replace('_', '-')}"):
            train_classifier(other, resume=True)
    manifest = json.loads(train_classifier(cfg, resume=True).read_text())
    assert manifest["config"]["lab_adversary"] == 1.0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert all(0 < row["lab_loss"] < 5 for row in rows)


def test_an_adversary_needs_two_labs_with_a_class_in_common(tmp_path):
    cfg = ClassifyTrainConfig([Source(_lab(tmp_path / "one", 0))], tmp_path / "run",
                              arch="smallnet", imgsz=32, epochs=1, lab_adversary=1.0)
    with pytest.raises(HemascopeError, match="need a class that two labs have"):
        train_classifier(cfg)


def test_a_run_logs_the_class_mean_gap(tmp_path):
    sources = [Source(_lab(tmp_path / "one", 0)), Source(_lab(tmp_path / "two", 80))]
    run = tmp_path / "run"
    train_classifier(ClassifyTrainConfig(sources, run, arch="smallnet", imgsz=32, epochs=1,
                                         batch=8, val_fraction=0.3, lab_align=1.0))
    row = json.loads((run / "log.jsonl").read_text())
    assert row["lab_gap"] > 0 and "lab_loss" not in row
