"""Issue #20, findings 2 and 8, through the real CLI: what a session records covers the model
and its manifest, doctor notices an edited manifest, a device that requires signatures
refuses any model not signed by a trusted key, and a bad manifest is one line in `run` and
`doctor`, before any session starts."""

import json
import shutil
from pathlib import Path

import pytest

from edge.cli.doctor import run_checks
from edge.storage import audit
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL, run_cli


@pytest.fixture
def device(tmp_path):
    """(model copy, data dir, profile writer): a profile of 2 synthetic fields using it."""
    model = tmp_path / "models" / BUNDLED_MODEL.name
    model.parent.mkdir()
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    data = tmp_path / "data"

    def profile(extra: str = "") -> str:
        path = tmp_path / f"p{abs(hash(extra))}.toml"
        path.write_text(f"[model]\ndetector = '{model}'\n[source]\nsynthetic_fields = 2\n"
                        f"[storage]\ndata_dir = '{data}'\n{extra}")
        return str(path)
    return model, data, profile


def _edit_manifest(model, change) -> None:
    path = model.with_suffix(".json")
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta, indent=2))


def _sessions(data):
    store = Store.open(data)
    try:
        return store.sessions()
    finally:
        store.close()


def _doctor(profile: str) -> dict[str, tuple[str, str]]:
    """{check: (status, what it found)}: the checks `hemascope doctor` prints in its table."""
    return {c.name: (c.status, c.detail) for c in run_checks(Path(profile))}


def _one_line_error(result, needle: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], \
        result.stderr


def test_an_edited_manifest_changes_what_sessions_record_and_doctor_notices(device, tmp_path):
    model, data, profile = device
    first = run_cli("run", "-p", profile(), "--json", str(tmp_path / "a.json"))
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    genuine = report["model"]["digest"]
    assert len(genuine) == 64 and genuine != report["model"]["sha256"]
    assert f"digest {genuine[:12]}" in first.stdout
    assert _doctor(profile())["manifests"] == ("ok", "1 model manifests as recorded by the "
                                               "last session that used them")

    # the finding: WBC and RBC names swapped in the manifest, the model file untouched
    _edit_manifest(model, lambda m: m.update(classes=["RBC", "WBC", "Platelets"]))
    status, found = _doctor(profile())["manifests"]
    assert status == "warn" and found.startswith(
        f"the manifest of detector.onnx changed since session {report['session_id'][:12]} "
        f"(digest recorded {genuine[:12]}, now ")
    assert run_cli("doctor", "-p", profile()).returncode == 0  # a warning: still ready
    second = run_cli("run", "-p", profile(), "--json", str(tmp_path / "b.json"))
    assert second.returncode == 0, second.stderr
    swapped = json.loads((tmp_path / "b.json").read_text())["model"]
    assert swapped["sha256"] == report["model"]["sha256"] and swapped["digest"] != genuine
    recorded = {s.id: (s.model_sha256, s.model_digest) for s in _sessions(data)}
    assert recorded[report["session_id"]] == (report["model"]["sha256"], genuine)


def test_a_device_requiring_signatures_refuses_unsigned_edited_or_foreign_models(device,
                                                                                tmp_path):
    model, data, profile = device
    key, other = tmp_path / "site.pem", tmp_path / "other.pem"
    made = run_cli("keys", "generate", str(key))
    assert made.returncode == 0, made.stderr
    public = made.stdout.split("public key: ")[1].split()[0]
    assert f'trusted_keys = ["{public}"]' in made.stdout
    assert run_cli("keys", "generate", str(other)).returncode == 0
    required = profile(f"[signatures]\nrequired = true\ntrusted_keys = ['{public}']\n")

    _one_line_error(run_cli("run", "-p", required), "is not signed")
    signed = run_cli("sign", str(model), "--key", str(key))
    assert signed.returncode == 0 and model.with_suffix(".sig").is_file(), signed.stderr
    done = run_cli("run", "-p", required)
    assert done.returncode == 0, done.stderr
    assert run_cli("doctor", "-p", required).returncode == 0
    status, found = _doctor(required)["model"]
    assert status == "ok" and found.endswith(f"signed by trusted key {public[:12]}… (verified)")
    [loaded] = audit.recent(data, kind="model.loaded")
    assert loaded.details["signed_by"] == public and loaded.details["digest"] == \
        _sessions(data)[0].model_digest

    _edit_manifest(model, lambda m: m["thresholds"].update(confidence=0.05))
    _one_line_error(run_cli("run", "-p", required), "changed since it was signed")
    assert run_cli("doctor", "-p", required).returncode == 1
    status, found = _doctor(required)["model"]
    assert status == "fail" and "changed since it was signed" in found
    # not required: it runs, and doctor still says the signature no longer covers it
    status, found = _doctor(profile())["model"]
    assert status == "warn" and "or its manifest changed since it was signed" in found
    assert run_cli("sign", str(model), "--key", str(other)).returncode == 0
    _one_line_error(run_cli("run", "-p", required), "which is not in signatures.trusted_keys")
    assert len(_sessions(data)) == 1  # refused runs started no session


@pytest.mark.parametrize("content, message", [
    (b'{"task": "detect", "classes": ["WBC\xe9"]}', "not UTF-8 text"),
    (None, "names 2 classes but the model outputs 3"),
    (32, "says input 3x32x32 but the model takes 3x640x640"),
    ("../../../../etc/passwd", "is not a file name"),
])
def test_a_bad_manifest_is_one_line_in_run_and_doctor_before_any_session(device, content,
                                                                         message):
    model, data, profile = device
    if isinstance(content, bytes):
        model.with_suffix(".json").write_bytes(content)
    elif content is None:
        _edit_manifest(model, lambda m: m.update(classes=["WBC", "RBC"]))
    elif isinstance(content, int):
        _edit_manifest(model, lambda m: m["input"].update(height=content, width=content))
    else:
        _edit_manifest(model, lambda m: m.update(file=content))
    _one_line_error(run_cli("run", "-p", profile()), message)
    assert not data.exists() or _sessions(data) == []
    doctor = run_cli("doctor", "-p", profile())
    assert doctor.returncode == 1 and "Traceback" not in doctor.stdout + doctor.stderr
    assert doctor.stdout.strip().splitlines()[-1] == "not ready: model"
    status, found = _doctor(profile())["model"]
    assert status == "fail" and message in found
