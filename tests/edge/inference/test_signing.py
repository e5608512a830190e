"""Ed25519 signatures over model and manifest: a round trip with real keys and the bundled
models, and every way a device that requires signatures refuses a model (issue #20)."""

import base64
import json
import re
import shutil
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.config import SignaturesConfig
from edge.core.errors import HemascopeError
from edge.inference.classifier import Classifier
from edge.inference.detector import Detector
from edge.inference.manifest import verify_model
from edge.inference.signing import (
    MESSAGE_PREFIX,
    generate_key,
    load_private_key,
    sign_digest,
    signature_path,
)
from tests.conftest import BUNDLED_MODEL


def _copy(model, folder, name=None):
    target = folder / (name or model.name)
    shutil.copy(model, target)
    shutil.copy(model.with_suffix(".json"), target.with_suffix(".json"))
    return target


@pytest.fixture
def keys(tmp_path):
    """(private key path, its public key) and another key pair's."""
    first, second = tmp_path / "site.pem", tmp_path / "other.pem"
    return (first, generate_key(first)), (second, generate_key(second))


def _sign(model, key_path):
    return sign_digest(model, verify_model(model).digest, load_private_key(key_path))


def test_a_signed_model_loads_under_required_signatures_and_names_its_signer(tmp_path, keys):
    (key, public), _ = keys
    assert key.stat().st_mode & 0o777 == 0o600
    model = _copy(BUNDLED_MODEL, tmp_path)
    signature = _sign(model, key)
    assert signature.public_key == public and signature_path(model).is_file()
    detector = Detector(model, trusted_keys=[public])
    assert detector.signer == public and signature.digest == detector.digest
    wbc = _copy(BUNDLED_MODEL.with_name("wbc-differential.onnx"), tmp_path)
    _sign(wbc, key)
    assert Classifier(wbc, trusted_keys=[public]).signer == public
    assert Detector(model).signer is None  # not required: the signature is not checked


def test_unsigned_and_other_key_are_refused(tmp_path, keys):
    (_, public), (other_key, other_public) = keys
    model = _copy(BUNDLED_MODEL, tmp_path)
    with pytest.raises(HemascopeError, match="is not signed and the profile requires"):
        Detector(model, trusted_keys=[public])
    _sign(model, other_key)
    with pytest.raises(HemascopeError, match=re.escape(f"signed by key {other_public}, which is "
                                                       "not in signatures.trusted_keys")):
        Detector(model, trusted_keys=[public])
    assert Detector(model, trusted_keys=[public, other_public]).signer == other_public


def test_an_edited_manifest_or_a_swapped_model_breaks_the_signature(tmp_path, keys):
    (key, public), _ = keys
    model = _copy(BUNDLED_MODEL, tmp_path)
    _sign(model, key)
    manifest = model.with_suffix(".json")
    genuine = manifest.read_bytes()
    meta = json.loads(genuine)
    meta["classes"] = ["RBC", "WBC", "Platelets"]  # WBC and RBC swapped, digest-wise legal
    manifest.write_text(json.dumps(meta, indent=2))
    with pytest.raises(HemascopeError, match="or its manifest changed since it was signed"):
        Detector(model, trusted_keys=[public])
    manifest.write_bytes(genuine)
    assert Detector(model, trusted_keys=[public]).signer == public
    # model and manifest replaced together (another genuine model under this name)
    other = BUNDLED_MODEL.with_name("detector-relu-int8.onnx")
    shutil.copy(other, model)
    meta = json.loads(other.with_suffix(".json").read_text())
    manifest.write_text(json.dumps({**meta, "file": model.name}))
    Detector(model)  # a consistent pair: only a signature tells it is not the signed one
    with pytest.raises(HemascopeError, match="changed since it was signed"):
        Detector(model, trusted_keys=[public])


def test_a_forged_or_damaged_signature_is_refused(tmp_path, keys):
    (key, public), (other_key, _) = keys
    model = _copy(BUNDLED_MODEL, tmp_path)
    _sign(model, key)
    sig = json.loads(signature_path(model).read_text())
    forged = load_private_key(other_key).sign(MESSAGE_PREFIX + sig["digest"].encode())
    signature_path(model).write_text(json.dumps({**sig, "signature":
                                                 base64.b64encode(forged).decode()}))
    with pytest.raises(HemascopeError, match="does not verify"):
        Detector(model, trusted_keys=[public])
    signature_path(model).write_bytes(b"\xff\xfe garbage")
    with pytest.raises(HemascopeError, match="is not a hemascope signature"):
        Detector(model, trusted_keys=[public])


def test_keys_are_never_overwritten_and_a_wrong_key_file_is_one_line(tmp_path, keys):
    (key, _), _ = keys
    before = key.read_bytes()
    with pytest.raises(HemascopeError, match="already exists"):
        generate_key(key)
    assert key.read_bytes() == before
    (tmp_path / "not-a-key.pem").write_text("hello")
    with pytest.raises(HemascopeError, match="is not an unencrypted PEM private key"):
        load_private_key(tmp_path / "not-a-key.pem")


def test_the_profile_checks_its_trusted_keys():
    public = base64.b64encode(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
                              ).decode()
    assert SignaturesConfig(required=True, trusted_keys=[public]).trusted() == [public]
    assert SignaturesConfig(trusted_keys=[public]).trusted() is None  # not required
    with pytest.raises(ValueError, match="needs at least one key"):
        SignaturesConfig(required=True)
    with pytest.raises(ValueError, match="is not an ed25519 public key"):
        SignaturesConfig(trusted_keys=[public[:-2] + "B="])
    with pytest.raises(ValueError, match="is not an ed25519 public key"):
        SignaturesConfig(trusted_keys=["ssh-ed25519 AAAA"])


def test_a_device_without_cryptography_says_what_to_install(tmp_path, keys, monkeypatch):
    (key, public), _ = keys
    model = _copy(BUNDLED_MODEL, tmp_path)
    _sign(model, key)
    for name in [m for m in sys.modules if m.split(".")[0] == "cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the `sign` extra were absent
    with pytest.raises(HemascopeError, match=r"pip install 'hemascope\[sign\]'"):
        Detector(model, trusted_keys=[public])
    assert Detector(model).signer is None  # without required signatures nothing needs it
