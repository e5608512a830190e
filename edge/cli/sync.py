"""`hemascope sync` and `hemascope bundle`: get finished sessions to the clinic hub."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edge.cli.options import (
    DataDirOpt,
    ProfileOpt,
    err,
    load_with_data_dir,
    open_store,
    out,
)
from edge.config import Profile
from edge.core.errors import HemascopeError

if TYPE_CHECKING:
    from edge.storage.store import Store

sync_app = typer.Typer(rich_markup_mode=None)
bundle_app = typer.Typer(help="Carry session payloads to the hub on a USB stick.",
                         no_args_is_help=True, rich_markup_mode=None)

def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def _print_status(profile: Profile, store: Store) -> None:
    from edge.sync.payload import outbox as payload_outbox

    outbox = payload_outbox(store)
    counts = outbox.counts()
    out.print(f"hub {profile.sync.hub_url or '(sync.hub_url not set)'}  "
              f"last confirmed {outbox.last_sent_at() or 'never'}", highlight=False)
    out.print(f"pending {counts['pending']}  sent {counts['sent']}  failed {counts['failed']}"
              f"  (exported on a stick, not yet confirmed: {counts['exported_unconfirmed']})",
              highlight=False)
    problems = outbox.problems()
    if problems:
        table = Table(title="payloads with a problem")
        for col in ("session", "version", "state", "attempts", "last attempt", "reason"):
            table.add_column(col)
        for r in problems:
            table.add_row(r["payload_key"][:12], str(r["version"]), r["state"], str(r["attempts"]),
                          (r["last_attempt_at"] or "-")[:19], r["last_error"] or "-")
        out.print(table)


@sync_app.callback(invoke_without_command=True)
def sync(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option(
        "--status", help="Show pending / sent / failed payloads, with reasons; send nothing.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed",
        help="Queue payloads the hub rejected again (after the cause was fixed).")] = False,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Upload pending session payloads to sync.hub_url; safe to interrupt and run again.

    \b
    Examples:
      hemascope sync -p /etc/hemascope/profile.toml
      hemascope sync --status
      hemascope sync set-token -p /etc/hemascope/profile.toml < token.txt
    """
    if ctx.invoked_subcommand is not None:
        return
    prof = load_with_data_dir(profile, data_dir)
    store = open_store(prof.storage.data_dir)
    if status:
        _print_status(prof, store)
        return
    from edge.sync.client import sync as run_sync
    from edge.sync.payload import outbox as payload_outbox

    if retry_failed:
        _say(f"{payload_outbox(store).retry_failed()} failed payloads queued again")
    report = run_sync(store, prof.sync, on_event=_say)
    out.print(f"{report.stored} stored, {report.duplicates} already at the hub, "
              f"{len(report.rejected)} rejected, {report.pending} pending", highlight=False)
    for key, version, why in report.rejected:
        _say(f"rejected session {key[:12]} v{version}: {why}")
    if report.rejected:
        raise HemascopeError(f"{len(report.rejected)} payloads rejected by the hub, kept here",
                             "see `hemascope sync --status`; once the cause is fixed run "
                             "`hemascope sync --retry-failed`")
    if report.pending:
        raise HemascopeError(f"{report.pending} payloads still pending",
                             "run `hemascope sync` again")


@sync_app.command("set-token")
def set_token(profile: ProfileOpt = None) -> None:
    """Store this device's hub token (read from stdin) at sync.token_path, mode 600."""
    from edge.sync.client import device_id, write_token

    path = load_with_data_dir(profile, None).sync.token_path
    if path is None:
        raise HemascopeError("sync.token_path is not set in the profile",
                             "set [sync] token_path in the device profile")
    token = (typer.prompt("token", hide_input=True) if sys.stdin.isatty()
             else sys.stdin.readline()).strip()
    write_token(path, token)
    out.print(f"token of device {device_id(token)} stored in {path} (mode 600)", highlight=False)


@bundle_app.command("export")
def export(
    path: Annotated[Path, typer.Argument(help="Folder to write to, e.g. the mounted stick.")],
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write every pending payload to PATH as one checksummed bundle signed with the device key.

    \b
    Example:
      hemascope bundle export /media/usb
    """
    from edge.storage.store import Store
    from edge.sync.bundle import export_bundle
    from edge.sync.client import read_token

    prof = load_with_data_dir(profile, data_dir)
    token = read_token(prof.sync.token_path)
    result = export_bundle(Store.open(prof.storage.data_dir), token, path)
    if result is None:
        out.print("nothing pending: no bundle written")
        return
    written, count = result
    out.print(f"{count} payloads written to {written}", highlight=False)
    out.print(f"import it on the hub: hemascope-hub import-bundle {written.name}", highlight=False)


@bundle_app.command("receipt")
def receipt(
    path: Annotated[Path, typer.Argument(help="The .receipt.json the hub wrote beside a bundle.")],
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Mark the payloads a hub receipt confirms as sent (verifies the hub's signature)."""
    from edge.storage.store import Store
    from edge.sync.bundle import apply_receipt
    from edge.sync.client import read_token

    prof = load_with_data_dir(profile, data_dir)
    token = read_token(prof.sync.token_path)
    changed = apply_receipt(Store.open(prof.storage.data_dir), token, path)
    out.print(f"{changed} payloads confirmed by the hub's receipt", highlight=False)
