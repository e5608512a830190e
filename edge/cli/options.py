"""What every `hemascope` command shares: the consoles, the profile options, loading them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from edge.config import Profile, load_profile

if TYPE_CHECKING:
    from edge.storage.store import Store

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ProfileOpt = Annotated[Path | None, typer.Option(
    "--profile", "-p", help="Device profile TOML (default: built-in workstation-dev).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    help="Override storage.data_dir of the profile (database and evidence images).")]


def load_with_data_dir(path: Path | None, data_dir: Path | None) -> Profile:
    """The profile at `path` (or the defaults), with --data-dir applied."""
    profile = load_profile(path)
    if data_dir is not None:
        profile.storage.data_dir = data_dir
    return profile


def open_store(data_dir: Path) -> Store:
    """The device store, after closing the sessions a stopped process left running (said on
    stderr): what `run`, `sessions`, `report` and `sync` start with."""
    from edge.core.errors import DiskFull
    from edge.pipeline.recovery import recover_sessions
    from edge.storage.store import Store

    store = Store.open(data_dir)
    try:
        recovery = recover_sessions(store)
    except DiskFull as exc:  # what is stored can still be read; a run refuses to start
        err.print(f"warning: sessions left running by a stopped process could not be closed: "
                  f"{exc.problem} — {exc.fix}", markup=False, highlight=False)
        return store
    if recovery.sessions:
        err.print(f"recovered {len(recovery.sessions)} sessions left running by a stopped "
                  f"process ({', '.join(s[:12] for s in recovery.sessions)}): marked "
                  f"interrupted, stored fields kept, queued for sync; "
                  f"{recovery.orphan_files} orphan files removed", markup=False, highlight=False)
    return store
