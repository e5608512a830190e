"""What every `hemascope` command shares: the consoles, the profile options, loading them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge.config import Profile, load_profile

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
