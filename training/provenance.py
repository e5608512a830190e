"""Provenance of what training and export make: the command that made it, and the time a
training run has cost over every process that worked on it.

A run killed and continued with `--resume` is trained by several processes. Each one is a
segment: its command, the epochs it finished, its wall-clock and CPU seconds. They are kept
in RUN/segments.json, rewritten after every epoch, so that the run's manifest states the
whole cost and every command that went into it, not only the last process's share.
"""

from __future__ import annotations

import json
import resource
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from edge.core.files import write_bytes_atomic


def command_line() -> str:
    """The command that is running, for manifests (so every model says how it was made)."""
    return shlex.join(["hemascope", *sys.argv[1:]])


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Segments:
    """The segments of one run; the running process's is the last and is updated by `tick`."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.path = out / "segments.json"
        previous = json.loads(self.path.read_text()) if resume and self.path.is_file() else []
        self.previous: list[dict] = previous
        self._wall0, self._cpu0 = time.time(), cpu_seconds()
        self.current = {"command": command_line(),
                        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "first_epoch": None, "last_epoch": None,
                        "wall_seconds": 0.0, "cpu_seconds": 0.0}

    def tick(self, epoch: int | None = None) -> None:
        """Record the time so far, and `epoch` (0-based) as finished; write the file."""
        if epoch is not None:
            if self.current["first_epoch"] is None:
                self.current["first_epoch"] = epoch
            self.current["last_epoch"] = epoch
        self.current["wall_seconds"] = round(time.time() - self._wall0, 1)
        self.current["cpu_seconds"] = round(cpu_seconds() - self._cpu0, 1)
        write_bytes_atomic(self.path, (json.dumps(self.all(), indent=2) + "\n").encode())

    def all(self) -> list[dict]:
        return [*self.previous, self.current]

    def summary(self) -> dict:
        """Manifest fields: the first command (it names the whole run), the totals, the list."""
        every = self.all()
        return {"command": every[0]["command"],
                "train_wall_seconds": round(sum(s["wall_seconds"] for s in every), 1),
                "train_cpu_seconds": round(sum(s["cpu_seconds"] for s in every), 1),
                "segments": every}
