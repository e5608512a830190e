"""USB bundles: export, import with the hub's idempotency, receipts, and tampering refused."""

import hashlib
import hmac
import json
import uuid
import zipfile
from pathlib import Path

import pytest

from edge.core.errors import HemascopeError
from edge.sync.bundle import read_bundle
from edge.sync.client import bundle_key
from tests.conftest import run_cli
from tests.helpers.sync import device_profile, device_rows, get, hub_cli, make_sessions


def _export(hub, tmp_path, n: int):
    device = f"usb-{uuid.uuid4().hex[:8]}"
    token = hub.add_device(device)
    data = tmp_path / device
    make_sessions(data, n, seed=7)
    profile = device_profile(tmp_path, data, hub.url, token)
    done = run_cli("bundle", "export", str(tmp_path / "stick"), "-p", str(profile))
    assert done.returncode == 0, done.stderr
    [path] = (tmp_path / "stick").glob("*.zip")
    return device, token, data, profile, path


def _listing(hub, device: str) -> list:
    """Everything the hub holds for a device, received_at and via included."""
    status, body, _ = get(f"{hub.url}/v1/devices/{device}/sessions", hub.reader)
    assert status == 200
    return json.loads(body)


def test_a_bundle_imported_twice_changes_nothing_and_its_receipt_confirms(hub, tmp_path):
    device, _, data, profile, path = _export(hub, tmp_path, 12)
    first = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert first.returncode == 0, first.stderr
    assert "12 stored, 0 already present, 0 conflicting" in first.stdout
    held = {(k, v): (sha, body) for (d, k, v), (sha, body) in hub.rows().items() if d == device}
    assert held == {k: (sha, body) for k, (sha, body, _) in device_rows(data).items()}
    before = _listing(hub, device)
    db_file = Path(hub.db)
    digest = hashlib.sha256(db_file.read_bytes()).hexdigest() if db_file.exists() else None
    second = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert second.returncode == 0 and "0 stored, 12 already present" in second.stdout
    assert _listing(hub, device) == before and {s["via"] for s in before} == {"bundle"}
    if digest is not None:  # SQLite: not one byte of the database file changed
        assert hashlib.sha256(db_file.read_bytes()).hexdigest() == digest
    receipt = path.with_name(path.name.removesuffix(".zip") + ".receipt.json")
    done = run_cli("bundle", "receipt", str(receipt), "-p", str(profile))
    assert done.returncode == 0 and "12 payloads confirmed" in done.stdout
    assert {state for _, _, state in device_rows(data).values()} == {"sent"}
    again = run_cli("bundle", "export", str(tmp_path / "stick2"), "-p", str(profile))
    assert "nothing pending" in again.stdout and not (tmp_path / "stick2").exists()


def _rewrite(path: Path, change: dict[str, bytes]) -> None:
    """Replace members of a bundle, as a tamperer or a failing stick would."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(change)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_damaged_or_forged_bundles_are_refused_before_anything_is_written(hub, tmp_path):
    device, token, _, _, path = _export(hub, tmp_path, 3)
    key = bundle_key(token)
    sidecar = path.with_name(path.name + ".sha256")
    with zipfile.ZipFile(path) as zf:
        payload = next(n for n in zf.namelist() if n.startswith("payloads/"))
        body = zf.read(payload)
    altered = body.replace(b'"version":1}', b'"version":2}')
    assert altered != body
    _rewrite(path, {payload: altered})
    done = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert done.returncode == 2 and "does not match its .sha256" in done.stderr
    sidecar.unlink()  # a copy without the sidecar is still checked payload by payload
    done = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert done.returncode == 2 and "fails its checksum" in done.stderr
    # a forger who also fixes the manifest's checksum cannot sign it with the device key
    with zipfile.ZipFile(path) as zf:
        manifest = zf.read("manifest.json").replace(
            hashlib.sha256(body).hexdigest().encode(),
            hashlib.sha256(altered).hexdigest().encode())
    forged = hmac.new(bundle_key(f"{device}." + "x" * 43), manifest, "sha256").hexdigest()
    _rewrite(path, {"manifest.json": manifest, "manifest.sig": forged.encode()})
    with pytest.raises(HemascopeError, match="not signed with device"):
        read_bundle(path, lambda _: key)
    done = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert done.returncode == 2 and "not signed with device" in done.stderr
    assert [k for k in hub.rows() if k[0] == device] == []


def test_bundles_from_unknown_or_revoked_devices_are_refused(hub, tmp_path):
    device, _, _, _, path = _export(hub, tmp_path, 2)
    assert hub_cli("revoke-device", device, "--db", hub.db).returncode == 0
    done = hub_cli("import-bundle", str(path), "--db", hub.db)
    assert done.returncode == 2 and f"device {device} was revoked" in done.stderr
    other = tmp_path / "other.db"
    done = hub_cli("import-bundle", str(path), "--db", str(other))
    assert done.returncode == 2 and f"bundle from unknown device {device}" in done.stderr
    assert [k for k in hub.rows() if k[0] == device] == []


def test_a_receipt_for_another_device_is_refused(hub, tmp_path):
    _, _, _, _, path = _export(hub, tmp_path / "a", 1)
    assert hub_cli("import-bundle", str(path), "--db", hub.db).returncode == 0
    receipt = path.with_name(path.name.removesuffix(".zip") + ".receipt.json")
    _, _, data, profile, _ = _export(hub, tmp_path / "b", 1)
    done = run_cli("bundle", "receipt", str(receipt), "-p", str(profile))
    assert done.returncode == 2 and "not signed for this device" in done.stderr
    assert {state for _, _, state in device_rows(data).values()} == {"pending"}
