"""Storage URLs: turning `--storage` into an Optuna storage, with the checks that keep records safe."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from search.errors import UserError
from search.optuna_internals import BulkReadStorage, engine_of

DEFAULT_STORAGE = "sqlite:///studies.db"
# A live worker writes a heartbeat this often; a RUNNING trial whose last heartbeat is older
# than the grace period belonged to a killed worker: it is marked FAIL and queued again.
HEARTBEAT_SECONDS = 20
GRACE_HEARTBEATS = 3  # heartbeats a trial may miss (delayed by a busy database, say) before it is stale
MAX_RETRIES = 3
# SQLite serialises writers; a writer waits this long for the lock instead of failing at once.
SQLITE_LOCK_TIMEOUT_SECONDS = 120
_SQLITE_HEADER = b"SQLite format 3\x00"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9._-]+")


def open_storage(
    url: str = DEFAULT_STORAGE,
    *,
    heartbeat: int = HEARTBEAT_SECONDS,
    must_exist: bool = False,
    bulk_reads: bool = False,
) -> RDBStorage:
    """An Optuna RDB storage for `url` (SQLite file or PostgreSQL), or a UserError saying why not.

    `must_exist`: for readers; a SQLite file that is not there is an error, not a new database.
    `bulk_reads`: for the dashboard, which reads whole studies (`optuna_internals.BulkReadStorage`).

    Heartbeats are on, so a trial of a killed worker does not stay RUNNING forever: once its last
    heartbeat is `GRACE_HEARTBEATS * heartbeat` seconds old, the next worker that looks fails it
    and queues it again with the same parameters.
    """
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if must_exist and path is not None and not path.exists():
            raise UserError(f"no database at {path}; run `make search` first or pass --storage")
        _prepare_sqlite(url)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_SECONDS}}
    elif url.startswith("postgresql"):
        # Stale pooled connections after a server restart would otherwise fail the next write.
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = (BulkReadStorage if bulk_reads else RDBStorage)(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=GRACE_HEARTBEATS * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise UserError(f"cannot open storage {redact(url)}: {reason}") from None
    if sqlite_path(url) is not None:  # a file several processes may share (not an in-memory database)
        _lock_at_begin(storage.engine)
    _own_connections_after_fork(storage.engine)
    return storage


def release_connections(study: optuna.Study) -> None:
    """Close this process's pooled connections to the study's storage; the next query opens one again.

    A worker calls this before forking a trial's process and waiting for it: PostgreSQL counts
    every open connection against its `max_connections` (100 by default), and a worker holding
    idle ones while its trial's process (and that process's heartbeat thread) hold their own
    would need three per worker instead of two.
    """
    engine_of(study).dispose()


class Held:
    """What `hold` holds, let go of when this handle is dropped or the process ends (however it ends)."""

    def __init__(self, release: Callable[[], None]) -> None:
        weakref.finalize(self, release)


def hold(study: optuna.Study, url: str, what: str) -> Held | None:
    """Hold `what` of study `study` for as long as the returned handle lives; None if another process holds it.

    For state that one process at a time may write (Keras Tuner's oracle). PostgreSQL: a session
    advisory lock, which the server drops when the connection ends. SQLite: a file lock beside the
    database file (`studies.db.kt-STUDY.lock`; the processes that write one SQLite file share a
    machine). An in-memory database has one process.
    """
    path = sqlite_path(url)
    if path is not None:
        handle = path.with_name(f"{path.name}.{what}-{folder_name(study.study_name)}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return Held(handle.close)
    if not url.startswith("postgresql"):
        return Held(lambda: None)
    # A connection of its own, outside the pool: closing it ends the session, and with it the lock.
    connection = sqlalchemy.create_engine(engine_of(study).url, poolclass=sqlalchemy.pool.NullPool).connect()
    key = f"{what}:{study.study_name}"
    held = connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": key}).scalar()
    connection.commit()  # the lock is the session's: it outlives the transaction, and no transaction stays open
    if not held:
        connection.close()
        return None
    return Held(connection.close)


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///path` URL (None for in-memory or other databases)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def study_folder(url: str, study: str, kind: str) -> Path:
    """Where study `study` keeps its files of one `kind` (`.kt`, `.paused`): beside a SQLite file, else here."""
    path = sqlite_path(url)
    return (path.parent if path is not None else Path()) / kind / folder_name(study)


def folder_name(study: str) -> str:
    """The study's name, checked to name one folder (its files' folders, its models' prefix), or a UserError."""
    if not _FOLDER_NAME.fullmatch(study) or study in (".", ".."):
        raise UserError(
            f"study name '{study}' cannot name a folder for the study's files; use letters, digits, '.', '_' and '-' "
            "in --study"
        )
    return study


def _prepare_sqlite(url: str) -> None:
    """Refuse files that are not SQLite databases, and switch the file to write-ahead logging.

    WAL lets readers (the dashboard, `search rank`) work while a search writes, and lets
    several worker processes write without "database is locked" as long as each waits its turn.
    """
    path = sqlite_path(url)
    if path is None:
        return
    if not path.parent.is_dir():
        raise UserError(f"cannot open storage {url}: folder {path.parent} does not exist; create it first")
    if path.exists():
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise UserError(f"{path} is not a SQLite database; pass another --storage or move the file away")
    try:
        if path.exists():
            # Checked read-only: the last writer to close a database copies its write-ahead log
            # into the file, and a corrupt file is to be left as it is.
            reader = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_LOCK_TIMEOUT_SECONDS
            )
            with contextlib.closing(reader):
                problem = reader.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise UserError(f"{path} is corrupt ({problem}); restore it from a backup or pass another --storage")
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_LOCK_TIMEOUT_SECONDS)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as error:
        raise UserError(
            f"{path} is corrupt or unreadable ({error}); restore it from a backup or pass another --storage"
        ) from None


def _lock_at_begin(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction take the write lock at its start (BEGIN IMMEDIATE).

    Optuna numbers a new trial, and hands a queued trial to one worker only, inside transactions
    that read with SELECT ... FOR UPDATE; SQLite ignores FOR UPDATE. Without this, two workers
    starting at once can take the same queued trial (both train it; the second fails when it
    records the result) or create two trials with the same number. Locked transactions wait their turn
    (up to the lock timeout); Optuna's transactions last milliseconds.
    """
    sqlalchemy.event.listen(engine, "connect", _no_implicit_begin)
    sqlalchemy.event.listen(engine, "begin", _begin_immediate)
    engine.dispose()  # connections pooled while the storage was built predate the listeners


# The engines of the storages opened in this process (weakly: a storage let go of is forgotten).
_ENGINES: weakref.WeakSet[sqlalchemy.engine.Engine] = weakref.WeakSet()


def _own_connections_after_fork(engine: sqlalchemy.engine.Engine) -> None:
    """A forked child (a trial's process, search/forked.py) opens connections of its own.

    Two processes talking over one inherited connection would corrupt each other's transactions;
    SQLAlchemy's rule for fork is to drop the inherited pool in the child, without closing it.
    Python cannot remove a fork hook, so one is registered, with the first storage, for them all.
    """
    if not _ENGINES:
        os.register_at_fork(after_in_child=_forget_parents_pools)
    _ENGINES.add(engine)


def _forget_parents_pools() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


def _no_implicit_begin(dbapi_connection: sqlite3.Connection, record: object) -> None:
    dbapi_connection.isolation_level = None  # the driver's own BEGIN would come first, deferred


def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def redact(url: str) -> str:
    """The URL with its password masked, for messages and for the commands a study records."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url
