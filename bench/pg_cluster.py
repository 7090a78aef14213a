"""A throw-away PostgreSQL cluster for benchmarks and tests: loopback and a unix socket only, removed at the end.

initdb with trust, fsync off, as the `postgres` user when run as root; plus what a load benchmark
needs: a fresh database per run, the server's CPU time, and its connection limit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    port: int
    folder: Path  # holds the data directory, the log and the unix socket

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL (over 127.0.0.1)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def max_connections(self) -> int:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as db:
            return int(db.execute("SHOW max_connections").fetchone()[0])

    def connections(self) -> int:
        """Client connections open now (this one included)."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as db:
            query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            return int(db.execute(query).fetchone()[0])

    def cpu_seconds(self) -> float:
        """CPU the server has used so far: the postmaster, its live backends, and the ended ones it reaped.

        PostgreSQL forks a backend per connection; when one ends its time moves into the
        postmaster's children's time, so one reading of /proc counts them all.
        """
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        total = sum(_stat(postmaster)[13:17])  # utime stime cutime cstime
        for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
            with contextlib.suppress(FileNotFoundError):  # ended meanwhile: counted in the next reading
                total += sum(_stat(int(child))[13:15])
        return total / _TICKS


def _stat(pid: int) -> list[int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [0, 0, *[int(f) if f.lstrip("-").isdigit() else 0 for f in fields]]  # index as in proc(5), from 1


def server_programs() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<version>/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def cluster() -> Iterator[Cluster]:
    """A fresh cluster on 127.0.0.1 and a socket in its temp folder; stopped and removed on exit."""
    programs = server_programs()
    if programs is None:
        raise SystemExit("PostgreSQL server programs (initdb, pg_ctl) not installed; apt-get install postgresql")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses to run as root
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    data = folder / "data"
    run(str(programs / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F"  # fsync off: the cluster is thrown away
    run(str(programs / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield Cluster(port, folder)
    finally:
        run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


class _NoServer(Cluster):
    """SQLite's stand-in: no server, so no server CPU and no connections to count."""

    def __init__(self) -> None:
        super().__init__(0, Path())

    def connections(self) -> int:
        return 0

    def cpu_seconds(self) -> float:
        return 0.0


NO_SERVER = _NoServer()
