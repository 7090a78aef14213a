"""The live view: optuna-dashboard over a storage, safe to run while searches write to it."""

from __future__ import annotations

import collections
import wsgiref.util
from collections.abc import Callable

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
    # Imported here, not at the top: they take seconds, and the command line reads this module's defaults.
    import bottle
    import optuna_dashboard

    storage = open_storage(storage_url, must_exist=True, bulk_reads=True)
    app = optuna_dashboard.wsgi(storage, artifact_store=EveryStudysStore(storage))
    _warm(app, storage)
    print(f"optuna-dashboard on {dashboard_url(host, port)} (Ctrl-C stops it)", flush=True)
    try:
        bottle.run(app, host=host, port=port)  # as optuna_dashboard.run_server serves it
    except OSError as error:
        raise UserError(
            f"cannot serve on {host}:{port} ({error.strerror or error}); pass another --port or --host"
        ) from None


def _warm(app: Callable, storage: optuna.storages.BaseStorage) -> None:
    """Ask `app` once for each study's page data, as a browser opening the study does, before serving.

    On a study's first request optuna-dashboard reads every trial and builds, from all of them, a
    cache of the study's search space and attr names: seconds on a study of thousands of trials
    (BENCHMARKS.md, "Storage under load"). Built here, before the address is printed, that wait is
    not the first visitor's.
    """
    for study in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(study.study_name)
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/studies/{study_id}"}
        wsgiref.util.setup_testing_defaults(environ)
        collections.deque(app(environ, lambda status, headers, exc_info=None: None), maxlen=0)  # the answer, unread
