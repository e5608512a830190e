"""Shared fixtures: the real bundled model, real datasets (skipped when absent), the real CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.pgserver import TempPostgres, unavailable_reason
from tests.helpers.sync import Hub, hub_db

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
BUNDLED_MODEL = ROOT / "edge" / "models" / "detector.onnx"


def needs_datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture
def datasets() -> Path:
    return needs_datasets()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `hemascope ARGS` in a fresh interpreter, as an operator would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout, check=False)


def kill_after_first_checkpoint(args: list[str], env: dict[str, str], run: Path,
                                timeout: float = 300) -> list[dict]:
    """Start `hemascope ARGS` (a training into `run`), SIGKILL it as soon as its first epoch
    is checkpointed (run/segments.json appears), and return that record."""
    import json
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], env={**os.environ, **env},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = run / "segments.json"
    deadline = time.monotonic() + timeout
    while not record.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return json.loads(record.read_text())


def tiny_yolo(src: Path, dst: Path, n_train: int, n_val: int) -> Path:
    """A YOLO dataset with the first images of each split of `src` (copied)."""
    import shutil

    for split, n in (("train", n_train), ("val", n_val)):
        (dst / "images" / split).mkdir(parents=True)
        (dst / "labels" / split).mkdir(parents=True)
        for image in sorted((src / "images" / split).glob("*.jpg"))[:n]:
            shutil.copy(image, dst / "images" / split / image.name)
            label = src / "labels" / split / f"{image.stem}.txt"
            if label.is_file():
                shutil.copy(label, dst / "labels" / split / label.name)
    return dst


def checkpoint_of(model: Path) -> Path | None:
    """The committed checkpoint a model was exported from (by the sha256 in its manifest)."""
    import hashlib
    import json

    source = json.loads(model.with_suffix(".json").read_text())["export"].get("source_sha256")
    for pt in sorted((ROOT / "training" / "checkpoints").glob("*.pt")):
        if hashlib.sha256(pt.read_bytes()).hexdigest() == source:
            return pt
    return None


def offline_env(tmp: Path) -> dict[str, str]:
    """Environment that blocks and logs every network attempt (tests/netguard) in a child."""
    return {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "netguard"), str(ROOT)]),
            "HEMASCOPE_NET_LOG": str(tmp / "net.log"),
            "HEMASCOPE_YOLO_CONFIG_DIR": str(tmp / "cfg")}


@dataclass
class Exported:
    """Artifacts of one `hemascope export` run per target, and how each command ended."""

    data: Path  # the tiny dataset: calibration (train) and gate (val) images
    netlog: Path  # network attempts (must stay absent)
    models: dict[str, Path]  # target -> artifact; "onnx" is the fp32 reference
    returncodes: dict[str, int]


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    """Small real artifacts of the bundled model, made by `hemascope export` with the network
    blocked: 20 calibration images (train), gated on 8 val images of TXL-PBC."""
    data = tiny_yolo(needs_datasets() / "detection" / "txl-pbc",
                     tmp_path_factory.mktemp("data"), 20, 8)
    out = tmp_path_factory.mktemp("exported")
    env = offline_env(out)
    ref = out / "detector.onnx"
    for f in (BUNDLED_MODEL, BUNDLED_MODEL.with_suffix(".json")):
        (out / f.name).write_bytes(f.read_bytes())
    calib = ["--calib", str(data), "--calib-images", "20"]
    targets = {"onnx-fp16": ["detector-fp16.onnx", str(ref)],
               "onnx-int8": ["detector-int8.onnx", str(ref), *calib]}
    ckpt = checkpoint_of(BUNDLED_MODEL)
    if ckpt is not None and importlib.util.find_spec("litert_torch"):
        litert = [str(ckpt), "--reference", str(ref)]
        targets["litert"] = ["detector-litert.tflite", *litert]
        targets["litert-int8"] = ["detector-litert-int8.tflite", *litert, *calib]
    result = Exported(data, out / "net.log", {"onnx": ref}, {})
    for target, (name, *args) in targets.items():
        done = run_cli("export", target, *args, "--data", str(data), "--out", str(out / name),
                       env=env, timeout=600)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        result.models[target], result.returncodes[target] = out / name, done.returncode
    return result


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pg = TempPostgres().start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Hub]:
    """One hub per backend for a test module, with a read token (`hub.reader`); tests use
    their own device ids. It takes 8 uploads at once, so that 8 concurrent copies of a
    request race each other."""
    folder = tmp_path_factory.mktemp("hub")
    running = Hub(hub_db(request, request.param, folder), folder,
                  serve_args=["--max-uploads", "8"]).start()
    running.reader = running.add_reader("tests")
    yield running
    running.stop()
