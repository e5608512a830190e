"""A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries), for tests and scripts.

As root, initdb and the server run as the `postgres` user in a folder it owns (PostgreSQL
refuses to run as root). The server listens on 127.0.0.1 on a free port and on a Unix
socket inside its own folder, and is removed with its data on stop().
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bindir() -> Path | None:
    """Folder of initdb / pg_ctl: PATH first, then Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def unavailable_reason() -> str | None:
    """Why a throwaway server cannot start here, or None."""
    if pg_bindir() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server"
        if shutil.which("runuser") is None:
            return "running as root but runuser is missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    """`with TempPostgres() as pg: url = pg.new_database("t1")`."""

    user = "hub"

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hs-pg-"))
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_owner, *args], check=True, capture_output=True, timeout=120,
                       cwd=self.dir)

    def start(self) -> TempPostgres:
        assert self.bindir is not None, unavailable_reason()
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.bindir is not None and (self.dir / "data" / "postmaster.pid").exists():
            subprocess.run([*self.as_owner, str(self.bindir / "pg_ctl"), "-D",
                            str(self.dir / "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, cwd=self.dir, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
