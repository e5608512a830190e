from pathlib import Path

import pytest

from edge.config import Profile, load_profile
from edge.core.errors import HemascopeError

PROFILES = Path(__file__).resolve().parents[2] / "firmware_config" / "profiles"


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_profile_validates(path):
    profile = load_profile(path)
    assert profile.device.name == path.stem


def test_workstation_dev_file_equals_the_builtin_defaults():
    assert load_profile(PROFILES / "workstation-dev.toml") == Profile()


def test_no_profile_gives_defaults():
    assert load_profile(None) == Profile()


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera]\nwidht = 640\n")
    with pytest.raises(HemascopeError, match=r"field 'camera\.widht'") as caught:
        load_profile(bad)
    assert caught.value.fix.startswith("did you mean 'camera.width'?")


def test_an_unknown_key_like_no_known_one_gets_no_suggestion(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[qc]\nzzzz = 1\n")
    with pytest.raises(HemascopeError, match=r"field 'qc\.zzzz'") as caught:
        load_profile(bad)
    assert "did you mean" not in caught.value.fix


def test_wrong_type_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\njpeg_quality = 'high'\n")
    with pytest.raises(HemascopeError, match=r"field 'storage\.jpeg_quality'"):
        load_profile(bad)


def test_unknown_backend_is_rejected(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[backend]\ntype = 'cuda-magic'\n")
    with pytest.raises(HemascopeError, match=r"field 'backend\.type'"):
        load_profile(bad)


def test_toml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera\n")
    with pytest.raises(HemascopeError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(HemascopeError, match="profile not found"):
        load_profile(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_profile(tmp_path):
    (tmp_path / "p.toml").write_text("[storage]\ndata_dir = 'data'\n[model]\ndetector = 'm.onnx'\n")
    profile = load_profile(tmp_path / "p.toml")
    assert profile.storage.data_dir == tmp_path / "data"
    assert profile.model.detector == tmp_path / "m.onnx"


def test_profile_docs_are_generated_from_the_current_model():
    """docs/profiles.md lists every key with its description: regenerate it when they change."""
    import importlib.util

    root = PROFILES.parents[1]
    spec = importlib.util.spec_from_file_location("gen", root / "scripts" / "gen_profile_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs" / "profiles.md").read_text() == gen.render(), (
        "docs/profiles.md is stale: run python scripts/gen_profile_docs.py")


def test_two_fields_in_flight_need_onnxruntime(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text("[backend]\ntype = 'litert'\n")
    assert load_profile(profile).backend.fields_in_flight == 1
    assert Profile().backend.fields_in_flight == 2  # onnxruntime
    profile.write_text("[backend]\ntype = 'litert'\nfields_in_flight = 2\n")
    with pytest.raises(HemascopeError, match=r"field 'backend\.fields_in_flight': litert runs "
                       r"one field at a time: set it to 1"):
        load_profile(profile)


@pytest.mark.parametrize(("text", "needle"), [
    ("[protocol]\nmode = 'differential'\n", "needs classifiers.wbc = true"),
    ("[protocol]\nmode = 'all-screen'\n", "needs classifiers.all_subtype = true"),
    ("[protocol]\nmode = 'diff'\n", "field 'protocol.mode'"),
    ("[classifiers]\nwbc = true\n[protocol]\nwhite_cells = 150\n",
     "field 'protocol.white_cells'"),
    ("[protocol]\nwbc_field_factor = 2000.0\n", "needs field_factor_source"),
    ("[protocol.flags]\nwbc_low_per_ul = -1\n", "field 'protocol.flags.wbc_low_per_ul'"),
    ("[protocol.flags]\nneutropenia = 1500\n", "field 'protocol.flags.neutropenia'"),
])
def test_a_bad_protocol_is_one_clear_error(tmp_path, text, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(HemascopeError, match=needle.replace(".", r"\.")):
        load_profile(bad)


def test_the_protocol_section_reaches_the_stop_rule_and_the_flags(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[classifiers]\nwbc = true\n[protocol]\nmode = 'differential'\n"
                    "white_cells = 400\nmax_fields = 90\n[protocol.flags]\n"
                    "neutrophils_low_per_ul = 1500.0\n")
    protocol = load_profile(path).protocol
    rule = protocol.stop_protocol()
    assert (rule.mode, rule.white_cells, rule.max_fields) == ("differential", 400, 90)
    assert protocol.flags.thresholds().neutrophils_low_per_ul == 1500
    assert protocol.flags.thresholds().wbc_low_per_ul == 4000  # the rest keep their defaults
