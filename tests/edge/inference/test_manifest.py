import json
import shutil

import pytest

from edge.core.errors import HemascopeError
from edge.inference.detector import Detector
from edge.inference.manifest import load_verified
from tests.conftest import BUNDLED_MODEL


@pytest.fixture
def model_copy(tmp_path):
    model = tmp_path / "detector.onnx"
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    return model


def test_bundled_model_matches_its_manifest():
    manifest = load_verified(BUNDLED_MODEL)
    assert manifest.task == "detect" and manifest.classes == ["WBC", "RBC", "Platelets"]


def test_a_changed_byte_is_refused(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(HemascopeError, match="does not match its manifest"):
        Detector(model_copy)


def test_corrupt_model_with_matching_digest_fails_to_load_cleanly(model_copy):
    model_copy.write_bytes(b"garbage" * 100)
    meta = json.loads(model_copy.with_suffix(".json").read_text())
    from edge.core.files import file_sha256

    meta["sha256"] = file_sha256(model_copy)
    model_copy.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(HemascopeError, match="cannot load model"):
        Detector(model_copy)


def test_missing_model_and_missing_manifest(model_copy, tmp_path):
    with pytest.raises(HemascopeError, match="model file not found"):
        Detector(tmp_path / "other.onnx")
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(HemascopeError, match="has no manifest"):
        Detector(model_copy)


def test_input_size_mismatch_with_profile(model_copy):
    with pytest.raises(HemascopeError, match="profile expects 320"):
        Detector(model_copy, expected_size=320)
