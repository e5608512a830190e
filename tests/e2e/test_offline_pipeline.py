"""train -> export -> eval -> run, on a tiny real dataset, with the network blocked.

Needs the `train` extra (torch, ultralytics); skipped on a device install.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, kill_after_first_checkpoint, needs_datasets, run_cli

pytest.importorskip("ultralytics", reason="needs the train extra")


def _tiny_yolo(src: Path, dst: Path, n_train: int, n_val: int) -> None:
    for split, n in (("train", n_train), ("val", n_val)):
        images = sorted((src / "images" / split).glob("*.jpg"))[:n]
        (dst / "images" / split).mkdir(parents=True)
        (dst / "labels" / split).mkdir(parents=True)
        for image in images:
            shutil.copy(image, dst / "images" / split / image.name)
            shutil.copy(src / "labels" / split / f"{image.stem}.txt", dst / "labels" / split)
    (dst / "data.yaml").write_text(
        "train: images/train\nval: images/val\nnc: 3\nnames: ['WBC', 'RBC', 'Platelets']\n")


def _offline_setup(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """The detection datasets, a tiny YOLO set from TXL-PBC, and the environment of a CLI run
    whose every network attempt is blocked and logged to the returned file."""
    data = needs_datasets() / "detection"
    tiny = tmp_path / "tiny"
    _tiny_yolo(data / "txl-pbc", tiny, 8, 4)
    netlog = tmp_path / "net.log"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "netguard"), str(ROOT)]),
           "HEMASCOPE_NET_LOG": str(netlog), "HEMASCOPE_YOLO_CONFIG_DIR": str(tmp_path / "cfg")}
    return data, tiny, netlog, env


def test_whole_workstation_chain_is_offline(tmp_path):
    data, tiny, netlog, env = _offline_setup(tmp_path)
    run = tmp_path / "run"
    trained = run_cli("train", "detect", str(tiny), str(data / "cbc"), "--out", str(run),
                      "--epochs", "1", "--imgsz", "64", "--batch", "4", "--val-fraction", "0.02",
                      env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["kept"]["tiny"] == 12
    assert manifest["data"]["duplicates_dropped"].get("cbc", 0) >= 0
    assert len(manifest["data"]["data_digest"]) == 64
    assert manifest["command"].startswith("hemascope train detect")

    onnx = tmp_path / "m.onnx"
    exported = run_cli("export", "onnx", str(run / "train" / "weights" / "best.pt"),
                       "--out", str(onnx), env=env, timeout=600)
    assert exported.returncode == 0, exported.stderr[-3000:]
    meta = json.loads(onnx.with_suffix(".json").read_text())
    assert meta["input"]["height"] == 64 and meta["training"]["data"]["data_digest"]

    evaluated = run_cli("eval", str(onnx), "--data", str(run / "data"), "--set-threshold",
                        "--json", str(tmp_path / "e.json"), env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "e.json").read_text())
    assert 0 <= result["mAP50"] <= 1 and set(result["counting"]) == {"WBC", "RBC", "Platelets"}
    assert json.loads(onnx.with_suffix(".json").read_text())["metrics"]["val"]["images"] == \
        result["images"]

    profile = tmp_path / "p.toml"
    profile.write_text(f"[model]\ndetector = '{onnx}'\n")
    ran = run_cli("run", "-p", str(profile), "-s", f"folder:{tiny / 'images' / 'val'}",
                  "--data-dir", str(tmp_path / "d"), env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert not netlog.exists(), netlog.read_text()


def test_a_relu_variant_warm_starts_from_a_silu_checkpoint_and_exports_without_silu(tmp_path):
    """`--activation relu` keeps the checkpoint's weights and changes only the activation: the
    exported graph has a ReLU where each SiLU (Sigmoid then Mul) was, offline."""
    import onnx

    _, tiny, netlog, env = _offline_setup(tmp_path)
    run = tmp_path / "run"
    trained = run_cli("train", "detect", str(tiny), "--out", str(run), "--epochs", "1",
                      "--imgsz", "64", "--batch", "4", "--activation", "relu", "--weights",
                      str(ROOT / "training" / "checkpoints" / "detector-640-v3.pt"),
                      env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Transferred 499/499 items" in trained.stdout + trained.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["activation"] == "nn.ReLU()"
    assert manifest["architecture"] == "yolo11n-relu.yaml"  # the checkpoint's scale, renamed
    out = tmp_path / "relu.onnx"
    exported = run_cli("export", "onnx", str(run / "train" / "weights" / "best.pt"),
                       "--out", str(out), env=env, timeout=600)
    assert exported.returncode == 0, exported.stderr[-3000:]
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Relu") == 77 and ops.count("Sigmoid") == 1  # the head's class scores
    assert not netlog.exists(), netlog.read_text()


def test_a_killed_detector_run_resumes_with_one_command_offline(tmp_path):
    """Kill `train detect` after its first epoch's checkpoint; `--resume` finishes the run,
    and the manifest counts both processes, still with the network blocked."""
    _, tiny, netlog, env = _offline_setup(tmp_path)
    run, epochs = tmp_path / "run", 4
    args = ["train", "detect", str(tiny), "--out", str(run), "--epochs", str(epochs),
            "--imgsz", "64", "--batch", "4"]
    first = kill_after_first_checkpoint(args, env, run)
    assert first[0]["last_epoch"] < epochs - 1 and not (run / "manifest.json").exists()

    resumed = run_cli(*args, "--resume", env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    segments = manifest["segments"]
    assert len(segments) == 2 and "--resume" not in manifest["command"]
    assert segments[1]["first_epoch"] > segments[0]["last_epoch"]
    assert segments[1]["last_epoch"] == epochs - 1
    assert manifest["train_cpu_seconds"] > segments[1]["cpu_seconds"] > 0
    assert (run / "train" / "weights" / "best.pt").is_file()
    again = run_cli(*args, "--resume", env=env, timeout=600)
    assert again.returncode != 0 and "nothing to resume" in again.stderr
    assert json.loads((run / "manifest.json").read_text()) == manifest
    assert not netlog.exists(), netlog.read_text()


def test_the_guard_really_blocks(tmp_path):
    """The network guard used above must catch a DNS look-up (else the test proves nothing)."""
    netlog = tmp_path / "net.log"
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "netguard"),
           "HEMASCOPE_NET_LOG": str(netlog)}
    code = "import urllib.request\ntry:\n urllib.request.urlopen('http://example.org', timeout=2)" \
           "\nexcept OSError:\n pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert "getaddrinfo example.org" in netlog.read_text()
