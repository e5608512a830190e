"""The `hemascope-hub` command: serve the hub, enrol and revoke devices, give and revoke read
tokens, import USB bundles."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge.core.errors import HemascopeError
from hub.db import HubDB

app = typer.Typer(help="hemascope hub: receives session payloads from devices, exactly once.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DbOpt = Annotated[str, typer.Option(
    "--db", envvar="HEMASCOPE_HUB_DB",
    help="SQLite file, or postgresql://USER@HOST:PORT/DB for a district server.")]


def _db(url: str) -> HubDB:
    return HubDB(url)


@app.command()
def serve(
    db: DbOpt = "hub.db",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    max_request_mb: Annotated[float, typer.Option(
        min=0.01, help="Largest upload request (MB); a larger one is refused with 413.")] = 64,
    max_uploads: Annotated[int, typer.Option(
        min=1, help="Uploads read and checked at once; more are answered 503 with "
        "Retry-After. The hub's memory grows with max-uploads x max-request-mb.")] = 2,
) -> None:
    """Run the HTTP API and the session listing (readers only: see add-reader).

    \b
    Example:
      hemascope-hub serve --db /var/lib/hemascope-hub/hub.db --host 0.0.0.0 \\
          --tls-cert hub.pem --tls-key hub.key
    """
    import uvicorn

    from hub.app import Limits, create_app

    if (tls_cert is None) != (tls_key is None):
        raise HemascopeError("--tls-cert and --tls-key go together", "pass both, or neither")
    application = create_app(_db(db), Limits(int(max_request_mb * 2**20), max_uploads))
    scheme = "https" if tls_cert else "http"
    err.print(f"hub listening on {scheme}://{host}:{port} (db {db})", markup=False,
              highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning",
                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_graceful_shutdown=5)


@app.command("add-device")
def add_device(
    device_id: Annotated[str, typer.Argument(help="Letters, digits, '-' and '_' (max 64).")],
    db: DbOpt = "hub.db",
    replace: Annotated[bool, typer.Option(
        "--replace", help="Issue a new token to an enrolled (or revoked) device.")] = False,
) -> None:
    """Enrol a device: print its token once (only a hash is stored)."""
    from edge.sync.client import TOKEN_RE

    token = f"{device_id}.{secrets.token_urlsafe(32)}"
    if not TOKEN_RE.match(token):
        raise HemascopeError(f"device id {device_id!r} is not allowed",
                             "use 1-64 letters, digits, '-' or '_'")
    _db(db).add_device(device_id, token, replace=replace)
    print(token)
    err.print("store it on the device: hemascope sync set-token -p PROFILE < token.txt "
              "(it is not shown again)", markup=False, highlight=False)


@app.command("revoke-device")
def revoke_device(device_id: str, db: DbOpt = "hub.db") -> None:
    """Refuse a device's uploads and bundles from now on (its stored sessions stay)."""
    _db(db).revoke_device(device_id)
    out.print(f"device {device_id} revoked", highlight=False)


@app.command("add-reader")
def add_reader(
    reader_id: Annotated[str, typer.Argument(
        help="Who reads: letters, digits, '-' and '_' (max 64), e.g. district-lab.")],
    db: DbOpt = "hub.db",
    replace: Annotated[bool, typer.Option(
        "--replace", help="Issue a new token (the old one stops working).")] = False,
) -> None:
    """Give a person or program a read token: print it once (only a hash is stored).

    It reads the listings, payloads and pages, and nothing can be read without one; it
    cannot upload. A browser signs in with any user name and the token as the password.

    \b
    Example:
      hemascope-hub add-reader district-lab --db hub.db > district-lab.token
      curl -H "Authorization: Bearer $(cat district-lab.token)" https://hub:8443/api/v1/devices
    """
    from hub.auth import READ_TOKEN_RE

    token = f"read.{reader_id}.{secrets.token_urlsafe(32)}"
    if not READ_TOKEN_RE.match(token):
        raise HemascopeError(f"reader name {reader_id!r} is not allowed",
                             "use 1-64 letters, digits, '-' or '_'")
    _db(db).add_reader(reader_id, token, replace=replace)
    print(token)
    err.print("keep it like a password: it reads every sample's results (it is not shown "
              "again)", markup=False, highlight=False)


@app.command("revoke-reader")
def revoke_reader(reader_id: str, db: DbOpt = "hub.db") -> None:
    """Refuse a read token from now on."""
    _db(db).revoke_reader(reader_id)
    out.print(f"reader {reader_id} revoked", highlight=False)


@app.command("import-bundle")
def import_bundle(
    path: Annotated[Path, typer.Argument(help="A .zip written by `hemascope bundle export`.")],
    db: DbOpt = "hub.db",
    receipt: Annotated[bool, typer.Option(
        help="Write NAME.receipt.json beside the bundle for `hemascope bundle receipt`.")
    ] = True,
) -> None:
    """Verify a USB bundle and store its payloads; importing it again stores nothing."""
    from edge.sync.bundle import read_bundle, receipt_path, write_receipt
    from hub.payloads import Rejected, validate

    hub = _db(db)

    def key_for(device_id: str) -> bytes:
        device = hub.device(device_id)
        if device is None:
            raise HemascopeError(f"bundle from unknown device {device_id}",
                                 "enrol it with `hemascope-hub add-device`")
        if device.revoked_at is not None:
            raise HemascopeError(f"device {device_id} was revoked at {device.revoked_at}",
                                 "re-enrol it with `hemascope-hub add-device --replace`")
        return device.bundle_key

    bundle = read_bundle(path, key_for)
    incoming, rejected = [], []
    for it in bundle.items:
        try:
            incoming.append(validate(it.key, it.version, it.sha256, it.body))
        except Rejected as exc:
            rejected.append(f"{it.key[:12]} v{it.version}: {exc}")
    if rejected:
        raise HemascopeError(f"{len(rejected)} payloads in {path.name} fail validation (first: "
                             f"{rejected[0]}); nothing imported",
                             "update the hub to the device's hemascope version")
    results = hub.store(bundle.device_id, incoming, "bundle")
    n = {s: sum(r["status"] == s for r in results) for s in ("stored", "duplicate", "conflict")}
    out.print(f"{n['stored']} stored, {n['duplicate']} already present, {n['conflict']} "
              f"conflicting (device {bundle.device_id})", highlight=False)
    if receipt:
        accepted = [it for it, r in zip(bundle.items, results, strict=True)
                    if r["status"] != "conflict"]
        target = receipt_path(path)
        try:
            write_receipt(target, path.name, bundle.device_id, key_for(bundle.device_id),
                          accepted)
            out.print(f"receipt written to {target}: on the device run "
                      f"`hemascope bundle receipt {target.name}`", highlight=False)
        except OSError as exc:
            err.print(f"warning: no receipt written ({exc.strerror}); the device keeps these "
                      "payloads pending until it syncs online", markup=False, highlight=False)
    if n["conflict"]:
        raise HemascopeError(f"{n['conflict']} payloads conflict with different bytes held",
                             "compare them at /api/v1/devices/DEVICE/sessions (read token)")


def main() -> None:
    try:
        app()
    except HemascopeError as exc:
        err.print(f"error: {exc.problem} — {exc.fix}", markup=False, highlight=False)
        sys.exit(2)
