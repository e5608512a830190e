"""Export targets and the accuracy gate, on real artifacts made offline (see `exported`)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edge.config import load_profile
from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.detector import Detector
from edge.inference.manifest import load_verified
from export.artifact import derive_manifest
from export.calibration import calibration_images
from export.onnx_int8 import export_onnx_int8
from tests.conftest import BUNDLED_MODEL, ROOT, run_cli

SIZE = (load_verified(BUNDLED_MODEL).input.height, load_verified(BUNDLED_MODEL).input.width)


def test_every_export_is_offline_and_gated(exported):
    assert not exported.netlog.exists(), exported.netlog.read_text()
    reference = load_verified(BUNDLED_MODEL)
    for target, model in exported.models.items():
        if target == "onnx":
            continue
        manifest = load_verified(model)  # sha256 of the file matches its manifest
        gate = manifest.gate
        assert gate is not None and gate.metric == "mAP50", target
        assert gate.reference["sha256"] == reference.sha256
        assert gate.data["images"] == 8 and len(gate.data["digest"]) == 64
        assert gate.backend == manifest.runtime
        assert gate.passed == (exported.returncodes[target] == 0), target
        assert gate.passed == (gate.drop <= 0.01)
        if "int8" in target:
            cal = manifest.export["calibration"]
            assert cal["images"] == 20 and re.fullmatch(r"[0-9a-f]{64}", cal["digest"])
    assert load_verified(exported.models["onnx-fp16"]).gate.passed  # fp16 loses nothing


def test_failed_gate_exits_nonzero_and_the_model_is_refused(exported, tmp_path):
    """An int8 model with its head decode quantized too (what onnx_int8 avoids): scores collapse,
    so the gate fails, unless the operator accepts the drop, which is recorded."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from export.onnx_int8 import CalibrationReader

    reference = exported.models["onnx"]
    bad = tmp_path / "whole-int8.onnx"
    cal = calibration_images(exported.data, SIZE, 5)
    quantize_static(reference, bad, CalibrationReader("images", cal.tensors()),
                    quant_format=QuantFormat.QDQ, per_channel=True)
    derive_manifest(reference, bad, "int8", "onnxruntime", {})
    args = ["export", "gate", str(bad), "--reference", str(reference),
            "--data", str(exported.data)]
    failed = run_cli(*args)
    assert failed.returncode == 1 and "NOT releasable" in failed.stderr
    gate = load_verified(bad).gate
    assert not gate.passed and gate.drop > 0.1 and gate.accepted_drop is None
    with pytest.raises(HemascopeError, match="failed its accuracy gate"):
        Detector(bad)

    accepted = run_cli(*args, "--accept-drop", "1.0")
    assert accepted.returncode == 0, accepted.stderr
    gate = load_verified(bad).gate
    assert gate.passed and gate.accepted_drop == 1.0 and gate.max_drop == 1.0
    Detector(bad)


def test_onnx_int8_export_is_deterministic(exported, tmp_path):
    again = tmp_path / "again.onnx"
    cal = calibration_images(exported.data, SIZE, 20)
    manifest = export_onnx_int8(exported.models["onnx"], again, cal)
    assert manifest.sha256 == file_sha256(exported.models["onnx-int8"])


def test_calibration_uses_train_only_and_warns_below_300(exported):
    with pytest.warns(UserWarning, match="300 recommended"):
        cal = calibration_images(exported.data, SIZE, 20)
    assert cal.folder == exported.data / "images" / "train" and len(cal.paths) == 20
    tensor = next(cal.tensors())
    assert tensor.shape == (1, 3, *SIZE) and tensor.min() >= 0 and tensor.max() <= 1


def test_derived_manifest_never_overwrites_another_models(exported, tmp_path):
    clash = exported.models["onnx"].with_suffix(".tflite")  # would write detector.json
    clash.write_bytes(b"x")
    with pytest.raises(HemascopeError, match="manifest of another model"):
        derive_manifest(exported.models["onnx"], clash, "fp32", "litert", {})
    clash.unlink()


def test_bench_reports_every_model_in_one_run(exported, tmp_path):
    out = tmp_path / "bench.json"
    done = run_cli("bench", str(exported.models["onnx"]), str(exported.models["onnx-int8"]),
                   "--data", str(exported.data), "--frames", "3", "--skip-map", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    assert rows[0]["speedup"] == 1.0 and all(r["infer_p50_ms"] > 0 for r in rows)
    assert all(r["peak_rss_mb"] > 30 and r["fields_per_s"] > 0 for r in rows)


def test_profile_selects_litert_with_the_edgetpu_delegate(tmp_path):
    profile = tmp_path / "coral.toml"
    profile.write_text('[backend]\ntype = "litert"\ndelegate = "edgetpu"\n')
    backend = load_profile(profile).backend
    assert (backend.type, backend.delegate) == ("litert", "edgetpu")
    profile.write_text('[backend]\ndelegate = "gpu"\n')
    with pytest.raises(HemascopeError, match=r"backend\.delegate"):
        load_profile(profile)


@pytest.mark.slow
def test_litert_and_edgetpu_exports_are_deterministic_and_full_integer(exported, tmp_path):
    """Re-export of the same checkpoint gives the same digest; the Edge TPU model is int8
    end to end (what edgetpu_compiler needs)."""
    from ai_edge_litert.interpreter import Interpreter

    from export.litert import export_litert
    from tests.conftest import checkpoint_of

    ckpt = checkpoint_of(BUNDLED_MODEL)
    if ckpt is None or "litert" not in exported.models:
        pytest.skip("no checkpoint for the bundled model, or no LiteRT exporter")
    again = export_litert(ckpt, exported.models["onnx"], tmp_path / "again.tflite")
    assert again.sha256 == file_sha256(exported.models["litert"])
    cal = calibration_images(exported.data, SIZE, 20)
    tpu = export_litert(ckpt, exported.models["onnx"], tmp_path / "tpu.tflite", cal,
                        integer_io=True)
    assert tpu.export["io"] == "int8" and tpu.precision == "int8"
    interpreter = Interpreter(str(tmp_path / "tpu.tflite"))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    outputs = {dtypes[op["outputs"][0]] for op in interpreter._get_ops_details()}
    assert outputs == {np.int8}  # every operation computes in int8
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8"
    assert interpreter.get_output_details()[0]["dtype"].__name__ == "int8"


def test_compiled_edgetpu_model_gets_a_manifest_from_its_full_integer_source(exported, tmp_path):
    from export.edgetpu import adopt_compiled, compiled_name

    if "litert-int8" not in exported.models:
        pytest.skip("no LiteRT export")
    source = tmp_path / "detector-edgetpu.tflite"
    source.write_bytes(exported.models["litert-int8"].read_bytes())
    meta = json.loads(exported.models["litert-int8"].with_suffix(".json").read_text())
    source.with_suffix(".json").write_text(json.dumps({**meta, "file": source.name}))
    compiled = compiled_name(source)
    compiled.write_bytes(source.read_bytes() + b"compiled")  # stands in for the compiler output
    with pytest.raises(HemascopeError, match="not a full-integer model"):  # float I/O source
        adopt_compiled(compiled)

    meta["export"]["io"] = "int8"
    source.with_suffix(".json").write_text(json.dumps({**meta, "file": source.name}))
    manifest = adopt_compiled(compiled)
    assert load_verified(compiled).sha256 == manifest.sha256 == file_sha256(compiled)
    assert manifest.export["compiled_from"]["sha256"] == file_sha256(source)
    assert manifest.gate == load_verified(source).gate and manifest.runtime == "litert"


def test_the_training_record_is_found_in_the_run_or_beside_a_kept_checkpoint(tmp_path):
    from export.onnx import training_manifest

    run_ckpt = tmp_path / "run" / "train" / "weights" / "best.pt"
    run_ckpt.parent.mkdir(parents=True)
    run_ckpt.write_bytes(b"w")
    (tmp_path / "run" / "manifest.json").write_text('{"command": "hemascope train detect A"}')
    kept = tmp_path / "checkpoints" / "detector-v9.pt"
    kept.parent.mkdir()
    kept.write_bytes(b"w")
    assert training_manifest(run_ckpt)["command"] == "hemascope train detect A"
    assert training_manifest(kept) == {}
    (tmp_path / "checkpoints" / "detector-v9.json").write_text('{"command": "B"}')
    assert training_manifest(kept)["command"] == "B"


def test_every_kept_checkpoint_has_its_training_record():
    from export.onnx import training_manifest

    for ckpt in sorted((ROOT / "training" / "checkpoints").glob("*.pt")):
        record = training_manifest(ckpt)
        if ckpt.stem.startswith("wbc-"):  # a differential
            assert record.get("command", "").startswith("hemascope train classify"), ckpt
            assert record["task"] == "classify", ckpt
            continue
        assert record.get("command", "").startswith("hemascope train detect"), ckpt
        assert f"{record['imgsz']}" in ckpt.stem, ckpt
