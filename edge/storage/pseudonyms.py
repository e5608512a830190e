"""Pseudonyms for sample and operator ids: a keyed HMAC-SHA256 with this device's secret.

The secret (32 random bytes, `device.secret` in the data dir, mode 0600) is made on first use
and never leaves the device. `pseudo:` and 16 hex digits (64 bits) stand for an id: the same
id always gives the same pseudonym on one device, and without the secret a pseudonym cannot
be linked back to its id, not even by trying every likely one. Sample ids and operator names
get different pseudonyms (the kind is part of the message).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from edge.core.errors import HemascopeError
from edge.storage import layout

SECRET_BYTES = 32
PSEUDONYM = re.compile(r"^pseudo:[0-9a-f]{16}$")


def device_secret(data_dir: Path) -> bytes:
    """This device's secret, made (0600, whatever the umask) if there is none yet; two
    processes making it at once end up with the same one."""
    path = data_dir / layout.DEVICE_SECRET
    if not path.exists():
        _create(path)
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise HemascopeError(f"cannot read the device secret {path} ({exc.strerror})",
                             "run hemascope as the user that owns the data dir") from None
    if len(secret) != SECRET_BYTES:
        raise HemascopeError(
            f"the device secret {path} is damaged ({len(secret)} bytes, not {SECRET_BYTES})",
            "restore it from a backup of the data dir; deleting it makes a new one, and new "
            "sessions then get other pseudonyms than the earlier ones")
    return secret


def _create(path: Path) -> None:
    """Write a new secret under a temporary name and link it into place: never a partial
    secret under its name, and never a second one over a first."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        pass
    finally:
        tmp.unlink()


def pseudonym(secret: bytes, kind: str, clear: str) -> str:
    """The pseudonym of a `kind` ("sample" or "operator") of id."""
    digest = hmac.new(secret, f"{kind}\0{clear}".encode(), hashlib.sha256).hexdigest()
    return f"pseudo:{digest[:16]}"


def is_pseudonym(value: str) -> bool:
    return PSEUDONYM.match(value) is not None
