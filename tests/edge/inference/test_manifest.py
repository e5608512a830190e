import json
import shutil

import numpy as np
import pytest

from edge.core.errors import HemascopeError
from edge.inference.classifier import Classifier
from edge.inference.detector import Detector
from edge.inference.manifest import MAX_MANIFEST_BYTES, load_verified
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


# Issue #20, findings 2 and 8: a manifest is checked whole, and its digest covers it.

BUNDLED_WBC = BUNDLED_MODEL.with_name("wbc-differential.onnx")


def _edit(model, change) -> None:
    path = model.with_suffix(".json")
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta, indent=2))


@pytest.fixture
def wbc_copy(tmp_path):
    model = tmp_path / BUNDLED_WBC.name
    shutil.copy(BUNDLED_WBC, model)
    shutil.copy(BUNDLED_WBC.with_suffix(".json"), model.with_suffix(".json"))
    return model


def test_the_digest_covers_the_manifest_and_not_its_layout(model_copy):
    genuine = Detector(model_copy)
    assert genuine.digest != genuine.sha256 and len(genuine.digest) == 64
    meta = json.loads(model_copy.with_suffix(".json").read_text())
    model_copy.with_suffix(".json").write_text(json.dumps(meta))  # same content, one line
    assert Detector(model_copy).digest == genuine.digest

    def swap(m):
        m["classes"][0], m["classes"][1] = m["classes"][1], m["classes"][0]
    _edit(model_copy, swap)
    swapped = Detector(model_copy)
    assert swapped.sha256 == genuine.sha256 and swapped.digest != genuine.digest
    _edit(model_copy, swap)  # back
    _edit(model_copy, lambda m: m["thresholds"].update(confidence=0.2))
    assert Detector(model_copy).digest not in (genuine.digest, swapped.digest)


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/detector.onnx",
                                  "..", "", "a\\b.onnx"])
def test_a_manifest_file_that_is_not_a_bare_name_is_refused(model_copy, name):
    _edit(model_copy, lambda m: m.update(file=name))
    with pytest.raises(HemascopeError, match=r"file: .* is not a file name"):
        Detector(model_copy)


def test_a_manifest_describing_another_file_is_refused(model_copy, tmp_path):
    other = tmp_path / "other.onnx"
    shutil.copy(model_copy, other)
    shutil.copy(model_copy.with_suffix(".json"), other.with_suffix(".json"))
    with pytest.raises(HemascopeError, match=r"describes 'detector\.onnx', not 'other\.onnx'"):
        Detector(other)


def test_a_detector_manifest_with_fewer_or_more_classes_than_outputs_is_refused(model_copy):
    _edit(model_copy, lambda m: m.update(classes=["WBC", "RBC"]))
    with pytest.raises(HemascopeError, match="names 2 classes but the model outputs 3"):
        Detector(model_copy)
    _edit(model_copy, lambda m: m.update(classes=["WBC", "RBC", "Platelets", "Blast"]))
    with pytest.raises(HemascopeError, match="names 4 classes but the model outputs 3"):
        Detector(model_copy)


def test_a_classifier_manifest_whose_classes_or_head_do_not_fit_is_refused(wbc_copy):
    _edit(wbc_copy, lambda m: m.update(classes=m["classes"][:-1]))
    with pytest.raises(HemascopeError, match="names 7 classes but the model outputs 8"):
        Classifier(wbc_copy)
    _edit(wbc_copy, lambda m: m.update(classes=[*m["classes"], "platelet"]))  # back to 8
    from edge.inference.head import LinearHead

    small = LinearHead.from_arrays(np.zeros((8, 16), np.float32), np.zeros(8, np.float32))
    _edit(wbc_copy, lambda m: m.update(head=small.model_dump()))
    with pytest.raises(HemascopeError, match="head for 16-dimensional embeddings but the model "
                                             "returns 1280"):
        Classifier(wbc_copy)


@pytest.mark.parametrize("size, message", [
    (32, "says input 3x32x32 but the model takes 3x640x640"),
    (416, "says input 3x416x416 but the model takes 3x640x640"),
    (8, "input.height: Input should be greater than or equal to 16"),
    (100_000, "input.height: Input should be less than or equal to 4096"),
])
def test_a_manifest_input_size_that_is_not_the_models_is_refused(model_copy, size, message):
    _edit(model_copy, lambda m: m["input"].update(height=size, width=size))
    with pytest.raises(HemascopeError, match=message):
        Detector(model_copy)


@pytest.mark.parametrize("content, message", [
    (b'{"task": "detect", "classes": ["WBC\xff"]}', r"not UTF-8 text \(byte 35\)"),
    (b"\xff\xfe{\x00}\x00", r"not UTF-8 text \(byte 0\)"),
    (b'{"task": "detect",', "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not JSON"),
    (b'["a list"]', "not a JSON object"),
    (b'{"task": "detect"}', "classes: Field required"),
])
def test_an_unreadable_manifest_is_one_line(model_copy, content, message):
    model_copy.with_suffix(".json").write_bytes(content)
    with pytest.raises(HemascopeError, match=message) as caught:
        Detector(model_copy)
    assert "\n" not in str(caught.value)


def test_a_huge_manifest_is_refused_without_reading_it_all(model_copy):
    with model_copy.with_suffix(".json").open("wb") as fh:
        fh.truncate(MAX_MANIFEST_BYTES + 10)
    with pytest.raises(HemascopeError, match="larger than 16 MB"):
        Detector(model_copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(classes=["WBC", "WBC", "RBC"]), "class names must be distinct"),
    (lambda m: m["thresholds"].update(confidence=1.5), "thresholds.confidence"),
    (lambda m: m.update(sha256="not-hex"), "sha256: String should match pattern"),
    (lambda m: m["input"].update(rbc_diameter=[50, 10]), "input.rbc_diameter"),
])
def test_manifest_values_out_of_range_are_refused(model_copy, change, message):
    _edit(model_copy, change)
    with pytest.raises(HemascopeError, match=message):
        Detector(model_copy)
