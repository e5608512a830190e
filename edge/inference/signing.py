"""Ed25519 signatures over a model and its manifest (the optional extra `sign`: cryptography).

`NAME.sig` sits beside `NAME.onnx` and its manifest `NAME.json`: JSON with the signer's public
key and the signature of b"hemascope-model-signature/1\\n" + the model digest, which covers
the model file and its manifest (`edge.inference.manifest.model_digest`). The workstation
signs (`hemascope sign`, `hemascope export ... --sign KEY`); a device whose profile sets
`signatures.required` refuses a model without a valid signature by one of
`signatures.trusted_keys`. Private keys are PKCS#8 PEM files (`hemascope keys generate`, or
`openssl genpkey -algorithm ed25519`); public keys are written as the base64 of their 32 raw
bytes, which is what a profile lists. `cryptography` is imported only to sign or to check.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.core.errors import HemascopeError
from edge.core.files import utc_now, write_bytes_atomic

SIGNATURE_FORMAT = "hemascope-signature/1"
MESSAGE_PREFIX = b"hemascope-model-signature/1\n"
MAX_SIGNATURE_BYTES = 4096
_INSTALL = "pip install 'hemascope[sign]' (the cryptography package)"


class ModelSignature(BaseModel):
    """The content of a `.sig` file."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["hemascope-signature/1"] = SIGNATURE_FORMAT
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str  # base64 of the 32 raw bytes
    digest: str  # the model digest that was signed (to tell "changed since" from "forged")
    signature: str  # base64 of the 64-byte signature
    signed_at: str


def signature_path(model: Path) -> Path:
    """detector.onnx -> detector.sig"""
    return model.with_suffix(".sig")


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise HemascopeError("model signatures need the cryptography package, which is not "
                             "installed", _INSTALL) from None
    return ed25519


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def generate_key(path: Path) -> str:
    """Write a new private key to `path` (PEM, mode 600; never over an existing file) and
    return its public key (base64)."""
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    if path.exists():
        raise HemascopeError(f"{path} already exists", "choose another file: a key is never "
                             "overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_bytes_atomic(path, pem, mode=0o600)
    return public_key_of(key)


def public_key_of(key: Any) -> str:
    """The base64 public key of a private key object."""
    from cryptography.hazmat.primitives import serialization

    return _b64(key.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw))


def load_private_key(path: Path) -> Any:
    """The ed25519 private key in a PEM file; anything else is one line."""
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    fix = "give the PEM file written by `hemascope keys generate`"
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise HemascopeError(f"cannot read key {path} ({exc.strerror})", fix) from None
    except (ValueError, TypeError) as exc:
        raise HemascopeError(f"{path} is not an unencrypted PEM private key ({exc})",
                             fix) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise HemascopeError(f"{path} is not an ed25519 key", fix)
    return key


def sign_digest(model: Path, digest: str, key: Any) -> ModelSignature:
    """Sign a verified model's digest with a private key (`load_private_key`); writes
    `NAME.sig`."""
    signature = ModelSignature(public_key=public_key_of(key), digest=digest,
                               signature=_b64(key.sign(MESSAGE_PREFIX + digest.encode())),
                               signed_at=utc_now())
    write_bytes_atomic(signature_path(model),
                       (signature.model_dump_json(indent=2) + "\n").encode())
    return signature


def read_signature(model: Path) -> ModelSignature | None:
    """The signature beside `model`, or None when there is none; an unreadable one is one
    line. Nothing is checked here (see `check_signature`)."""
    path = signature_path(model)
    if not path.exists():
        return None
    fix = f"sign the model again: hemascope sign {model.name} --key KEY"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SIGNATURE_BYTES + 1)
        if len(data) > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        return ModelSignature.model_validate(json.loads(data.decode("utf-8")))
    except OSError as exc:
        raise HemascopeError(f"cannot read signature {path} ({exc.strerror})", fix) from None
    except (ValueError, RecursionError, ValidationError):  # also bad UTF-8 and JSON
        raise HemascopeError(f"signature {path} is not a hemascope signature", fix) from None


def check_signature(model: Path, digest: str, trusted_keys: Sequence[str]) -> str:
    """The trusted public key whose signature covers this model digest; a model unsigned,
    signed by another key, changed since it was signed or wrongly signed is one line."""
    sign_fix = (f"sign it on the workstation (hemascope sign {model.name} --key KEY) and copy "
                f"{signature_path(model).name} beside it")
    signature = read_signature(model)
    if signature is None:
        raise HemascopeError(f"model {model.name} is not signed and the profile requires "
                             "signatures (signatures.required)", sign_fix)
    if signature.public_key not in trusted_keys:
        raise HemascopeError(f"model {model.name} is signed by key {signature.public_key}, "
                             "which is not in signatures.trusted_keys",
                             "add that key to the profile if you trust it, or " + sign_fix)
    ed25519 = _ed25519()
    from cryptography.exceptions import InvalidSignature

    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(
            base64.b64decode(signature.public_key, validate=True))
        public.verify(base64.b64decode(signature.signature, validate=True),
                      MESSAGE_PREFIX + digest.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        if signature.digest != digest:
            raise HemascopeError(
                f"model {model.name} or its manifest changed since it was signed (digest "
                f"signed {signature.digest[:12]}…, now {digest[:12]}…)",
                "restore the signed model and manifest, or " + sign_fix) from None
        raise HemascopeError(f"the signature of model {model.name} does not verify (damaged "
                             "or forged)", sign_fix) from None
    return signature.public_key
