"""`hemascope export ... --sign KEY`: the artifact is signed once its gate passes, never when
it fails, and a key that cannot sign stops the command before any work (issue #20)."""

from __future__ import annotations

import shutil

from edge.inference.detector import Detector
from edge.inference.signing import generate_key, read_signature, signature_path
from tests.conftest import BUNDLED_MODEL, offline_env, run_cli, tiny_yolo


def test_export_signs_a_gated_artifact_only(datasets, tmp_path):
    data = tiny_yolo(datasets / "detection" / "txl-pbc", tmp_path / "data", 2, 2)
    ref = tmp_path / BUNDLED_MODEL.name
    shutil.copy(BUNDLED_MODEL, ref)
    shutil.copy(BUNDLED_MODEL.with_suffix(".json"), ref.with_suffix(".json"))
    key, not_a_key = tmp_path / "site.pem", tmp_path / "bad.pem"
    public = generate_key(key)
    not_a_key.write_text("not a key\n")
    out = tmp_path / "detector-fp16.onnx"
    args = ["export", "onnx-fp16", str(ref), "--data", str(data), "--out", str(out)]
    env = offline_env(tmp_path)

    refused = run_cli(*args, "--sign", str(not_a_key), env=env)
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "is not an unencrypted PEM private key" in refused.stderr

    failed = run_cli(*args, "--accept-drop", "-1", "--sign", str(key), env=env, timeout=600)
    assert failed.returncode == 1 and "NOT releasable" in failed.stderr
    assert out.exists() and not signature_path(out).exists()

    done = run_cli(*args, "--sign", str(key), env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"signed {out.name} and its manifest with key {public}" in done.stdout
    assert read_signature(out).public_key == public
    assert Detector(out, trusted_keys=[public]).signer == public
    assert not (tmp_path / "net.log").exists()
