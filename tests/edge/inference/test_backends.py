"""The backend contract, for every runtime installed here, on real exported artifacts:
input shape, output shape and dtype, and decoded boxes on a known frame that agree with the
onnxruntime fp32 reference. Plus the one-line errors of runtimes that are not installed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge.capture.folder import read_image
from edge.core.detections import Detections
from edge.core.errors import HemascopeError
from edge.inference.backends import load_backend
from edge.inference.detector import Detector
from edge.inference.manifest import load_verified
from tests.conftest import BUNDLED_MODEL, ROOT
from training.metrics import box_iou

# target: (share of the reference's boxes found again with IoU >= 0.8, mean score change).
# int8: measured on 4 val fields, 0.89-1.0 of the boxes and 0.013-0.05 mean score change.
TOLERANCE = {"onnx": (1.0, 1e-5), "onnx-fp16": (0.97, 0.005), "litert": (0.99, 0.002),
             "onnx-int8": (0.85, 0.06), "litert-int8": (0.85, 0.06)}


def agreement(ref: Detections, det: Detections) -> tuple[float, float]:
    """Share of reference boxes matched by a same-class box (IoU >= 0.8), and the mean score
    difference over the matches."""
    if not len(ref):
        return 1.0, 0.0
    iou = box_iou(ref.xyxy, det.xyxy) if len(det) else np.zeros((len(ref), 0))
    same = ref.class_id[:, None] == det.class_id[None, :]
    iou = np.where(same, iou, 0.0)
    best = iou.argmax(axis=1) if iou.shape[1] else np.zeros(len(ref), int)
    hit = iou.max(axis=1, initial=0.0) >= 0.8
    diffs = np.abs(ref.confidence[hit] - det.confidence[best[hit]])
    return float(hit.mean()), float(diffs.mean()) if len(diffs) else 1.0


@pytest.fixture(scope="module")
def frame(exported) -> np.ndarray:
    return read_image(sorted((exported.data / "images" / "val").glob("*.jpg"))[0])


@pytest.mark.parametrize("target", list(TOLERANCE))
def test_backend_contract(exported, frame, target):
    if target not in exported.models:
        pytest.skip(f"{target}: its exporter is not installed")
    model = exported.models[target]
    runtime = load_verified(model).runtime
    reference = Detector(exported.models["onnx"], confidence=0.25)
    detector = Detector(model, runtime, confidence=0.25, allow_failed_gate=True)

    prepared = reference.prepare(frame)
    size = reference.size[0]
    assert detector.backend.input_shape == reference.backend.input_shape == (1, 3, size, size)
    out = detector.backend.infer(prepared.tensor)[0]
    ref_out = reference.backend.infer(prepared.tensor)[0]
    anchors = sum((size // stride) ** 2 for stride in (8, 16, 32))
    assert out.dtype == np.float32 and out.shape == ref_out.shape == (1, 7, anchors)

    ref, det = reference(frame).detections, detector(frame).detections
    assert len(ref) > 10  # a real smear field
    share, score_diff = agreement(ref, det)
    min_share, max_diff = TOLERANCE[target]
    assert share >= min_share, f"{target}: only {share:.0%} of the reference boxes found"
    assert score_diff <= max_diff, f"{target}: scores moved by {score_diff:.4f} on average"
    assert abs(len(det) - len(ref)) <= max(1, 0.15 * len(ref))


def test_tensorrt_off_jetson_is_one_line_naming_the_device():
    with pytest.raises(HemascopeError, match="Jetson") as err:
        load_backend("tensorrt", BUNDLED_MODEL)
    assert "\n" not in str(err.value)


def test_missing_litert_runtime_names_the_extra():
    """With neither ai-edge-litert nor tflite-runtime importable, the error says what to do."""
    code = ("import sys\nsys.modules['ai_edge_litert'] = sys.modules['tflite_runtime'] = None\n"
            "from pathlib import Path\nfrom edge.inference.backends import load_backend\n"
            "from edge.core.errors import HemascopeError\n"
            "try:\n    load_backend('litert', Path('m.tflite'))\n"
            "except HemascopeError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert "pip install 'hemascope[pi]'" in done.stdout


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # LiteRT's
def test_edgetpu_delegate_needs_a_compiled_model_and_the_library(exported, tmp_path):
    pytest.importorskip("ai_edge_litert")
    if "litert-int8" not in exported.models:
        pytest.skip("no LiteRT export")
    with pytest.raises(HemascopeError, match="not compiled for the Edge TPU"):
        load_backend("litert", exported.models["litert-int8"], delegate="edgetpu")
    compiled = tmp_path / "detector_edgetpu.tflite"
    compiled.write_bytes(exported.models["litert-int8"].read_bytes())
    with pytest.raises(HemascopeError, match="libedgetpu"):  # no Coral runtime on this machine
        load_backend("litert", compiled, delegate="edgetpu")


def test_delegate_is_for_litert_only():
    with pytest.raises(HemascopeError, match=r"needs backend\.type"):
        load_backend("onnxruntime", BUNDLED_MODEL, delegate="edgetpu")


def test_model_for_another_runtime_is_refused(exported):
    if "litert" not in exported.models:
        pytest.skip("no LiteRT export")
    with pytest.raises(HemascopeError, match=r'backend\.type = "litert"'):
        Detector(exported.models["litert"])  # profile default: onnxruntime
