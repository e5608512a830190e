"""USB bundles: pending payloads carried to the hub on a stick, checksummed and signed.

`hemascope-DEVICE-STAMP.zip` holds `manifest.json` (canonical JSON: format, device id and,
per payload, key, version, sha256, size and path), `manifest.sig` (hex HMAC-SHA256 of the
manifest with the device's bundle key) and `payloads/KEY.vVERSION.json`, the exact outbox
bytes. `NAME.zip.sha256` beside it checks the whole file (`sha256sum -c`). The hub verifies
all of it and stores payloads with the same idempotency as uploads, so a stick carried twice
changes nothing; it then writes a receipt, signed with the same key, that the device turns
into 'sent' with `hemascope bundle receipt`. Both are audit events (`bundle.export`,
`bundle.receipt`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from edge.core.errors import HemascopeError
from edge.core.files import (
    file_sha256,
    read_regular_file,
    utc_now,
    write_atomic,
    write_bytes_atomic,
)
from edge.storage import audit
from edge.storage.store import Store
from edge.sync.client import bundle_key, device_id
from edge.sync.models import canonical_json
from edge.sync.payload import outbox as payload_outbox

BUNDLE_FORMAT = "hemascope.bundle.v1"
RECEIPT_FORMAT = "hemascope.receipt.v1"
MAX_MEMBER_BYTES = 256 * 2**20
_EXPORT_AGAIN = "export it again on the device with `hemascope bundle export`"
# What zipfile raises for a damaged archive: a bad header or CRC, deflate data that does not
# decode, a member cut short, an unknown compression method or an encrypted member.
_DAMAGED = (zipfile.BadZipFile, OSError, zlib.error, EOFError, NotImplementedError,
            RuntimeError, ValueError)


@dataclass(frozen=True)
class BundleItem:
    key: str
    version: int
    sha256: str
    body: bytes


@dataclass(frozen=True)
class Bundle:
    device_id: str
    created_at: str
    items: list[BundleItem]


def _sign(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def export_bundle(store: Store, token: str, dest: Path) -> tuple[Path, int] | None:
    """Write every pending payload into a signed bundle in dest; None if nothing is pending."""
    outbox = payload_outbox(store)
    if not outbox.counts()["pending"]:
        return None
    device = device_id(token)
    entries: list[dict[str, Any]] = []
    ids: list[int] = []

    def write(fh: BinaryIO) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for item in outbox.pending():  # one payload in memory at a time
                member = f"payloads/{item.key}.v{item.version}.json"
                entry = {"key": item.key, "version": item.version, "sha256": item.sha256,
                         "size": len(item.body), "path": member}
                zf.writestr(member, item.body)
                entries.append(entry)
                ids.append(item.id)
            manifest = canonical_json({"format": BUNDLE_FORMAT, "device_id": device,
                                       "created_at": utc_now(), "payloads": entries})
            zf.writestr("manifest.json", manifest)
            zf.writestr("manifest.sig", _sign(bundle_key(token), manifest))

    try:
        dest.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = dest / f"hemascope-{device}-{stamp}.zip"
        write_atomic(path, write)
        digest = file_sha256(path)
        write_bytes_atomic(path.with_name(path.name + ".sha256"),
                           f"{digest}  {path.name}\n".encode())
    except OSError as exc:
        raise HemascopeError(f"cannot write the bundle to {dest} ({exc.strerror})",
                             "check that the stick is mounted, writable and not full") from None
    with store.transaction():
        outbox.mark_exported(ids, utc_now())
        audit.record(store, "bundle.export", {"file": path.name, "sha256": digest,
                                              "payloads": len(ids)})
    return path, len(ids)


def _member(zf: zipfile.ZipFile, name: str, where: Path) -> bytes:
    try:
        info = zf.getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise HemascopeError(f"{where.name}: {name} is implausibly large", _EXPORT_AGAIN)
        return zf.read(info)
    except KeyError:
        raise HemascopeError(f"{where.name} has no {name}", _EXPORT_AGAIN) from None
    except _DAMAGED as exc:
        raise HemascopeError(f"{where.name} is damaged ({exc})", _EXPORT_AGAIN) from None


def _sidecar_sha256(side: Path) -> str:
    """The checksum a `NAME.zip.sha256` file states ('' when it states none)."""
    try:
        words = read_regular_file(side, 4096).decode("ascii", "replace").split()
    except ValueError:  # not a regular file, or too large: no checksum of ours
        return ""
    return words[0] if words else ""


def read_bundle(path: Path, key_for: Callable[[str], bytes]) -> Bundle:
    """Open and verify a bundle: whole-file checksum, signature, every payload's sha256.

    key_for(device_id) returns that device's bundle key or raises HemascopeError.
    """
    side = path.with_name(path.name + ".sha256")
    try:
        if not path.is_file():  # a FIFO or a device would never end
            raise HemascopeError(f"{path} is not a bundle file", "pass the .zip itself")
        if side.exists() and _sidecar_sha256(side) != file_sha256(path):
            raise HemascopeError(f"{path.name} does not match its .sha256 (damaged copy)",
                                 _EXPORT_AGAIN)
        zf = zipfile.ZipFile(path)
    except _DAMAGED as exc:
        raise HemascopeError(f"{path} is not a readable bundle ({exc})", _EXPORT_AGAIN) from None
    with zf:
        raw = _member(zf, "manifest.json", path)
        signature = _member(zf, "manifest.sig", path).decode("ascii", "replace").strip()
        try:
            manifest: dict[str, Any] = json.loads(raw)
            device = str(manifest["device_id"])
            entries = [(str(e["key"]), int(e["version"]), str(e["sha256"]), str(e["path"]))
                       for e in manifest["payloads"]]
            ok = manifest["format"] == BUNDLE_FORMAT
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise HemascopeError(f"{path.name} has no valid {BUNDLE_FORMAT} manifest",
                                 _EXPORT_AGAIN)
        if not hmac.compare_digest(signature, _sign(key_for(device), raw)):
            raise HemascopeError(f"{path.name} is not signed with device {device}'s key",
                                 "it was altered or signed with another token; " + _EXPORT_AGAIN)
        items = []
        for key, version, sha, member in entries:
            body = _member(zf, member, path)
            if hashlib.sha256(body).hexdigest() != sha:
                raise HemascopeError(f"{path.name}: payload {key} v{version} fails its checksum",
                                     _EXPORT_AGAIN)
            items.append(BundleItem(key, version, sha, body))
    return Bundle(device, str(manifest.get("created_at", "")), items)


def receipt_path(bundle_path: Path) -> Path:
    return bundle_path.with_name(bundle_path.name.removesuffix(".zip") + ".receipt.json")


def write_receipt(path: Path, bundle_name: str, device: str, key: bytes,
                  accepted: list[BundleItem]) -> None:
    """The hub's signed statement of which payload versions it now holds."""
    doc = {"format": RECEIPT_FORMAT, "device_id": device, "bundle": bundle_name,
           "accepted": [{"key": i.key, "version": i.version, "sha256": i.sha256}
                        for i in accepted]}
    body = canonical_json({"receipt": doc, "signature": _sign(key, canonical_json(doc))})
    write_bytes_atomic(path, body)


def apply_receipt(store: Store, token: str, path: Path) -> int:
    """Mark the payloads a verified hub receipt lists as sent; returns how many changed."""
    fix = "use the .receipt.json the hub wrote beside this device's bundle"
    try:
        doc = json.loads(path.read_bytes())
        receipt, signature = doc["receipt"], str(doc["signature"])
        confirmed = [(str(a["key"]), int(a["version"]), str(a["sha256"]))
                     for a in receipt["accepted"]]
        ok = receipt["format"] == RECEIPT_FORMAT
    except OSError as exc:
        raise HemascopeError(f"cannot read receipt {path} ({exc.strerror})", fix) from None
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise HemascopeError(f"{path.name} is not a hemascope receipt", fix)
    if receipt["device_id"] != device_id(token) or not hmac.compare_digest(
            signature, _sign(bundle_key(token), canonical_json(receipt))):
        raise HemascopeError(f"{path.name} is not signed for this device", fix)
    with store.transaction():
        changed = payload_outbox(store).mark_sent(confirmed, utc_now(), "receipt")
        audit.record(store, "bundle.receipt", {"file": path.name, "listed": len(confirmed),
                                               "confirmed": changed})
    return changed
