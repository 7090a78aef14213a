"""Every touch of Optuna's private API and of its database tables, in one place.

Optuna has no public way to read one trial by number, to reach the SQLAlchemy engine under a
study, to write to a frozen trial, or to read many trials' values and a few of their attrs
without building every trial object (1 s of `search rank`'s 2 on 1,000 trials). What follows
is what Optuna 5 does inside; pyproject.toml pins the major version, and
tests/test_optuna_internals.py fails on an upgrade that changes any of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy

TESTED_MAJOR = 5  # the Optuna major version whose internals this module uses

_COMPLETE = sqlalchemy.text(
    """
    SELECT t.number, v.value, v.value_type, a.key, a.value_json
    FROM trials t
    JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
    LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key IN :keys
    WHERE t.study_id = :study AND t.state = 'COMPLETE'
    """
).bindparams(sqlalchemy.bindparam("keys", expanding=True))
_STATES = sqlalchemy.text("SELECT state, count(*) FROM trials WHERE study_id = :study GROUP BY state")
_INFINITE = {"INF_POS": math.inf, "INF_NEG": -math.inf}


def engine_of(study: optuna.Study) -> sqlalchemy.engine.Engine:
    """The SQLAlchemy engine under a study's RDB storage (Optuna wraps the RDBStorage in a cache)."""
    return study._storage._backend.engine


def stored_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial `number` of `study`, read alone: `study.trials[number]` reads all of them (1 s for 1,000)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def live_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A writable handle on a stored trial (to record why the driver fails it)."""
    return optuna.Trial(study, trial._trial_id)


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Optuna's heartbeat for `trial` while the block runs, as optimize() keeps one (ask and tell do not)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def complete_attrs(study: optuna.Study, keys: Iterable[str]) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """(number, value, the user attrs among `keys`) of every complete trial, by number, in one query."""
    trials: dict[int, tuple[float, dict[str, Any]]] = {}
    with engine_of(study).connect() as connection:
        for number, value, value_type, key, value_json in connection.execute(
            _COMPLETE, {"study": study._study_id, "keys": list(keys)}
        ):
            _, attrs = trials.setdefault(number, (_INFINITE.get(value_type, value), {}))
            if key is not None:
                attrs[key] = json.loads(value_json)
    for number in sorted(trials):
        yield number, *trials[number]


def state_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials the study holds in each state (lower-case state names, zeros included), in one query."""
    with engine_of(study).connect() as connection:
        found = dict(connection.execute(_STATES, {"study": study._study_id}).all())
    return {state.name.lower(): found.get(state.name, 0) for state in optuna.trial.TrialState}
