"""Many workers on a real PostgreSQL server: a throw-away cluster on loopback, started and stopped here.

Skipped with the reason when PostgreSQL's server programs are not installed, unless
REQUIRE_SERVICES=1 (CI installs them): then the test fails instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_workers import check_killed_workers_trial_is_retried, check_workers_share_a_study

DATABASE = "search"


def _server_programs() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<version>/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database on a fresh PostgreSQL cluster listening on 127.0.0.1 only, removed afterwards."""
    programs = _server_programs()
    if programs is None:
        reason = "PostgreSQL server programs (initdb, pg_ctl) not installed; apt-get install postgresql"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    # PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="search-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    port = _free_port()
    data = folder / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    run(str(programs / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
    # fsync off: a test cluster is thrown away, and syncing would only slow the workers down.
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F"
    run(str(programs / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_three_workers_share_one_postgresql_study(postgres_url: str) -> None:
    check_workers_share_a_study(postgres_url, workers=3, n_trials=6)


def test_a_killed_worker_s_trial_is_retried_on_postgresql(postgres_url: str) -> None:
    check_killed_workers_trial_is_retried(postgres_url)
