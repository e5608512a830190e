"""A classifier through the int8 export and its accuracy gate: calibrated on the training
split of its class folders (as it was trained: a test share stays out), gated on their val
split, run by the device code."""

import json
import shutil

import numpy as np
import pytest

from edge.inference.classifier import Classifier
from tests.conftest import needs_datasets, offline_env, run_cli

torch = pytest.importorskip("torch", reason="needs the train extra")
onnx = pytest.importorskip("onnx", reason="needs the train extra")


def test_int8_classifier_is_gated_on_accuracy_and_runs_on_the_device(tmp_path):
    from export.classify_onnx import export_classifier_onnx
    from export.onnx_int8 import classifier_float_nodes
    from training.classify_model import LiteNet
    from training.classify_train import CHECKPOINT_FORMAT

    src = needs_datasets() / "classification" / "pbc-8class"
    data = tmp_path / "cells"
    for cls in ("lymphocyte", "neutrophil"):
        (data / cls).mkdir(parents=True)
        for image in sorted((src / cls).iterdir())[:10]:
            shutil.copy(image, data / cls / image.name)
    torch.manual_seed(0)
    net = LiteNet(2, 64)
    ckpt = tmp_path / "best.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "task": "classify",
                "classes": ["lymphocyte", "neutrophil"], "imgsz": 64, "arch": "lite0",
                "model": net.state_dict(), "epoch": 0}, ckpt)
    # its training record: the folder was trained with 3 images of each class held out as test
    source = {"name": "cells", "path": str(data), "split": "hash", "zoom_out": 1.0, "test": 0.25}
    ckpt.with_suffix(".json").write_text(json.dumps({"config": {"sources": [source]}}))
    ref = tmp_path / "wbc.onnx"
    export_classifier_onnx(ckpt, ref)
    kept_float = classifier_float_nodes(onnx.load(str(ref)))
    assert any("TopK" in n for n in kept_float) and any("Softmax" in n for n in kept_float)

    out = tmp_path / "wbc-int8.onnx"
    done = run_cli("export", "onnx-int8", str(ref), "--calib", str(data), "--data", str(data),
                   "--out", str(out), "--accept-drop", "1", env=offline_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["precision"] == "int8" and manifest["task"] == "classify"
    gate = manifest["gate"]
    assert gate["metric"] == "accuracy" and gate["passed"] and gate["data"]["images"] == 4
    # the train split only: neither val (2 + 2) nor the held-out test share (3 + 3)
    assert manifest["export"]["calibration"]["images"] == 10
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    fp32, int8 = Classifier(ref).probabilities([rgb]), Classifier(out).probabilities([rgb])
    assert int8.shape == (1, 2) and np.abs(int8 - fp32).max() < 0.2
