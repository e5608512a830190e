import shutil
from datetime import UTC, datetime

from edge.cli.doctor import FAIL, OK, check_clock, check_database, run_checks
from edge.config import Profile
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL, run_cli


def _profile_file(tmp_path, body: str = "") -> str:
    path = tmp_path / "p.toml"
    path.write_text(f"[storage]\ndata_dir = '{tmp_path / 'data'}'\n{body}")
    return str(path)


def test_ready_machine_exits_zero_and_lists_every_check(tmp_path):
    result = run_cli("doctor", "-p", _profile_file(tmp_path))
    assert result.returncode == 0, result.stdout
    for name in ("profile", "model", "classifiers", "backend", "edge tpu", "camera", "disk",
                 "database", "clock"):
        assert f"│ {name}" in result.stdout
    assert "ready" in result.stdout.splitlines()[-1]


def test_no_camera_here_is_reported_and_not_ready(tmp_path):
    profile = _profile_file(tmp_path, "[source]\ndefault = 'camera:7'\n")
    result = run_cli("doctor", "-p", profile)
    assert result.returncode == 1
    assert "camera 7 not found" in result.stdout and "not ready: camera" in result.stdout


def test_tampered_model_and_bad_profile_fail(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    with model.open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\xff\xfe")
    result = run_cli("doctor", "-p", _profile_file(tmp_path, f"[model]\ndetector = '{model}'\n"))
    assert result.returncode == 1 and "does not match its manifest" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera]\nfps = 'fast'\n")
    result = run_cli("doctor", "-p", str(bad))
    assert result.returncode == 1 and "camera.fps" in result.stdout


def test_corrupt_database_fails_the_integrity_check(tmp_path):
    profile = Profile()
    profile.storage.data_dir = tmp_path
    store = Store.open(tmp_path)
    store.start_session(sample_id="S", operator=None, profile_name="t", profile_json="{}",
                        source="synthetic", model_file="m", model_sha256="x", classes=["WBC"],
                        version="0")
    store.close()
    assert check_database(profile).status == OK
    db = tmp_path / "hemascope.db"
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\x00" * (4096 - 100)  # wipe the schema page
    db.write_bytes(bytes(data))
    assert check_database(profile).status == FAIL


def test_clock_sanity(tmp_path):
    profile = Profile()
    profile.storage.data_dir = tmp_path
    assert check_clock(profile, datetime(1970, 1, 1, tzinfo=UTC)).status == FAIL
    store = Store.open(tmp_path)
    store.start_session(sample_id="S", operator=None, profile_name="t", profile_json="{}",
                        source="synthetic", model_file="m", model_sha256="x", classes=["WBC"],
                        version="0")
    store.close()
    assert check_clock(profile).status == OK
    assert check_clock(profile, datetime(2025, 6, 1, tzinfo=UTC)).status == FAIL  # went back


def test_checks_stop_after_an_invalid_profile(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    checks = run_checks(bad)
    assert [c.name for c in checks] == ["profile"] and checks[0].status == FAIL


def test_a_missing_classifier_model_fails_the_classifiers_check(tmp_path):
    body = f"[classifiers]\nwbc = true\nwbc_model = '{tmp_path / 'gone.onnx'}'\n"
    result = run_cli("doctor", "-p", _profile_file(tmp_path, body))
    assert result.returncode == 1 and "not ready: classifiers" in result.stdout
    ok = run_cli("doctor", "-p", _profile_file(tmp_path, "[classifiers]\nwbc = true\n"))
    assert ok.returncode == 0 and "wbc-differential.onnx" in ok.stdout
