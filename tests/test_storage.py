"""Storage URLs (search/storage.py): what a SQLite file is set up with, a study held by one process, and URLs shown
without passwords."""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.storage import hold, open_storage, redact, sqlite_path


def test_a_new_sqlite_storage_logs_ahead_so_readers_work_beside_writers(tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    open_storage(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_sqlite_transaction_takes_the_write_lock_at_its_start(tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    storage = open_storage(f"sqlite:///{db}")
    holder = sqlite3.connect(db, isolation_level=None, timeout=0)
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")  # a read, yet inside BEGIN IMMEDIATE: the lock is held
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            holder.execute("BEGIN IMMEDIATE")
        connection.rollback()
    holder.execute("BEGIN IMMEDIATE")  # free again once that transaction ended
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///studies.db", Path("studies.db")),
        ("sqlite:////tmp/a b.db", Path("/tmp/a b.db")),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://u@h/db", None),
    ],
)
def test_sqlite_path(url: str, path: Path | None) -> None:
    assert sqlite_path(url) == path


def test_redact_masks_the_password_only() -> None:
    assert redact("postgresql+psycopg://me:secret@host:5432/db") == "postgresql+psycopg://me:***@host:5432/db"
    assert redact("sqlite:///studies.db") == "sqlite:///studies.db"


# Another process trying to hold what this one holds: prints whether it got it.
_TRY_HOLD = """
import sys, optuna
from search.storage import hold, open_storage
study = optuna.load_study(study_name="s", storage=open_storage(sys.argv[1]))
print(hold(study, sys.argv[1], "kt") is not None)
"""


def _other_process_holds(url: str) -> bool:
    run = subprocess.run([sys.executable, "-c", _TRY_HOLD, url], capture_output=True, text=True, check=True)
    return run.stdout.strip() == "True"


def test_a_study_is_held_by_one_process_until_its_handle_goes(storage_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=open_storage(storage_url))
    handle = hold(study, storage_url, "kt")
    assert handle is not None
    assert not _other_process_holds(storage_url)
    del handle
    gc.collect()
    assert _other_process_holds(storage_url), "the hold outlived its handle"
