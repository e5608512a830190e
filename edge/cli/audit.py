"""`hemascope audit ...`: read and check the device's hash-chained audit log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from edge.cli.options import DataDirOpt, ProfileOpt, err, load_with_data_dir, out

audit_app = typer.Typer(help="The device's audit trail: what happened, hash-chained.",
                        no_args_is_help=True, rich_markup_mode=None)


@audit_app.command("verify")
def verify(profile: ProfileOpt = None, data_dir: DataDirOpt = None) -> None:
    """Check every event of the audit log, its link to the one before, and the head the
    database recorded: exit 0 when intact, 1 naming the first bad event (an edit, a deletion,
    events cut off the end, a database or log replaced).

    Example: hemascope audit verify -p /etc/hemascope/profile.toml
    """
    from edge.storage.audit import log_path
    from edge.storage.audit import verify as verify_log

    folder = load_with_data_dir(profile, data_dir).storage.data_dir
    result = verify_log(folder)
    if result.problems:
        err.print(f"audit log {log_path(folder)} is not intact: {result.problems[0]}",
                  markup=False, highlight=False)
        for problem in result.problems[1:]:
            err.print(f"  also: {problem}", markup=False, highlight=False)
        raise typer.Exit(1)
    if result.last is None:
        out.print(f"audit log {log_path(folder)}: no events yet", highlight=False)
        return
    out.print(f"audit log {log_path(folder)}: {result.events} events, intact (last: event "
              f"{result.last.seq}, {result.last.kind} at {result.last.at}, hash "
              f"{result.last.hash[:12]})", highlight=False)


@audit_app.command("show")
def show(
    limit: Annotated[int, typer.Option("--last", "-n", min=1,
                                       help="How many of the newest events.")] = 20,
    kind: Annotated[str | None, typer.Option(
        help="Only events of this kind or family, e.g. session, model.loaded, sync.")] = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the newest audit events, oldest first (`audit verify` checks them).

    Examples:
      hemascope audit show
      hemascope audit show --kind model -n 50
    """
    from edge.storage.audit import recent

    events = recent(load_with_data_dir(profile, data_dir).storage.data_dir, limit, kind)
    table = Table()
    for col in ("seq", "at", "kind", "details"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(str(e.seq), e.at[:23], e.kind, _details(e.details))
    out.print(table, markup=False, highlight=False)


def _details(details: dict[str, Any]) -> str:
    """key=value pairs, digests and keys cut to 12 characters (`audit.jsonl` has them whole)."""
    def short(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return text[:12] + "…" if isinstance(value, str) and len(value) >= 44 else text
    return " ".join(f"{k}={short(v)}" for k, v in sorted(details.items()))
