"""Storage URLs (search/storage.py): what a SQLite file is set up with, and URLs shown without passwords."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from search.storage import open_storage, redact, sqlite_path


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
