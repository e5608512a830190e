"""Which process owns a session, and whether it still runs (stdlib only).

A process is its pid and, where /proc exists (Linux), its start time in clock ticks since
boot: a pid reused by a later process then does not pass for the owner. Without /proc only
the pid is compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    """A process: its pid, and its start time from /proc/PID/stat (None without /proc)."""

    pid: int
    started: str | None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc/PID/stat; None if there is no such process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()  # the name in (...) may hold spaces
    return rest[0], rest[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def this_process() -> ProcessId:
    """The calling process."""
    stat = _stat(os.getpid()) if _PROC.is_dir() else None
    return ProcessId(os.getpid(), stat[1] if stat else None)


def is_alive(process: ProcessId) -> bool:
    """Whether `process` still runs: same pid and, when both are known, same start time (a
    zombie, killed but not yet reaped by its parent, counts as gone)."""
    if _PROC.is_dir():
        stat = _stat(process.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return process.started is None or stat[1] == process.started
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
