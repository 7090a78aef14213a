"""The live view: optuna-dashboard over a storage, safe to run while searches write to it."""

from __future__ import annotations

import contextlib
import threading

import optuna

from search.artifacts import EveryStudysStore
from search.errors import UserError
from search.storage import open_storage

DEFAULT_HOST = "127.0.0.1"  # loopback: the dashboard can rename and delete studies, so it is not shared by default
DEFAULT_PORT = 8080


def dashboard_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/dashboard"


def serve(storage_url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve optuna-dashboard over `storage_url` until Ctrl-C, after printing where to open it.

    The storage is opened the way the search opens it (SQLite in write-ahead-log mode, writers
    wait for the lock), so the dashboard reads while a search writes and neither sees
    "database is locked". Each trial's kept model shows on its page (Artifacts), read from its
    study's store (search/artifacts.py).

    Raises:
        UserError: the storage does not exist or cannot be opened, or the address cannot be bound.
    """
    # Imported here, not at the top: it takes seconds, and the command line reads this module's defaults.
    import optuna_dashboard

    storage = open_storage(storage_url, must_exist=True, bulk_reads=True)
    threading.Thread(target=_read_ahead, args=(storage,), name="read-ahead", daemon=True).start()
    print(f"optuna-dashboard on {dashboard_url(host, port)} (Ctrl-C stops it)", flush=True)
    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=EveryStudysStore(storage))
    except OSError as error:
        raise UserError(
            f"cannot serve on {host}:{port} ({error.strerror or error}); pass another --port or --host"
        ) from None


def _read_ahead(storage: optuna.storages.BaseStorage) -> None:
    """Read every study's trials once, while the dashboard serves and the browser loads its scripts.

    The storage keeps what it read (search/optuna_internals/_bulk_reads.py), so the first page of a
    study asks the database only for what changed since: on a study of 10,000 trials that read is
    2-4 s of the first answer's 10-14 s (BENCHMARKS.md, "Storage under load").
    """
    for study in storage.get_all_studies():
        with contextlib.suppress(KeyError):  # deleted meanwhile, from the dashboard itself
            storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False)
