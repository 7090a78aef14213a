"""Every touch of Optuna's private API and of its database tables, in one place.

Optuna has no public way to read one trial by number, to reach the SQLAlchemy engine under a
study, to keep state in a study's system attrs, to write to a frozen trial, to read many
trials' values and a few of their attrs without building every trial object (1 s of `search
rank`'s 2 on 1,000 trials), to list and forget the artifacts recorded with a study's trials (a
finished trial takes no attr), or to weigh TPE's choice among its candidates by anything but
its own density ratio. What follows is what Optuna 5 does inside; pyproject.toml pins the major
version, and tests/test_optuna_internals.py fails on an upgrade that changes any of it. Reading
whole studies for the dashboard, table by table, is `_bulk_reads.py`.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from search.optuna_internals._bulk_reads import BulkReadStorage as BulkReadStorage  # the dashboard's storage

TESTED_MAJOR = 5  # the Optuna major version whose internals this module uses

_COMPLETE_SQL = """
    SELECT t.number, v.value, v.value_type, a.key, a.value_json
    FROM trials t
    JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
    LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key IN :keys
    WHERE t.study_id = :study AND t.state = 'COMPLETE'
    """
_COMPLETE = sqlalchemy.text(_COMPLETE_SQL).bindparams(sqlalchemy.bindparam("keys", expanding=True))
_COMPLETE_OF = sqlalchemy.text(_COMPLETE_SQL + " AND t.number IN :numbers").bindparams(
    sqlalchemy.bindparam("keys", expanding=True), sqlalchemy.bindparam("numbers", expanding=True)
)
_VALUES = sqlalchemy.text(
    """
    SELECT t.number, v.value, v.value_type
    FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
    WHERE t.study_id = :study AND t.state = 'COMPLETE'
    """
)
_STATES = sqlalchemy.text("SELECT state, count(*) FROM trials WHERE study_id = :study GROUP BY state")
_ARTIFACTS = sqlalchemy.text(
    """
    SELECT t.number, t.state, a.value_json
    FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id
    WHERE t.study_id = :study AND a.key LIKE :pattern
    """
)
_FORGET = sqlalchemy.text(
    """
    DELETE FROM trial_system_attributes
    WHERE key = :key AND trial_id = (SELECT trial_id FROM trials WHERE study_id = :study AND number = :number)
    """
)
_INFINITE = {"INF_POS": math.inf, "INF_NEG": -math.inf}


def engine_of(study: optuna.Study) -> sqlalchemy.engine.Engine:
    """The SQLAlchemy engine under a study's RDB storage (Optuna wraps the RDBStorage in a cache)."""
    return study._storage._backend.engine


def stored_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial `number` of `study`, read alone: `study.trials[number]` reads all of them (1 s for 1,000)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs, where a backend keeps state of its own (Optuna deprecated `Study.system_attrs`)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def live_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A writable handle on a stored trial (to record why the driver fails it)."""
    return optuna.Trial(study, trial._trial_id)


def first_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record `trial`'s heartbeat now, not when the heartbeat thread first runs.

    Optuna fails a dead worker's RUNNING trial only once that trial has a heartbeat gone stale;
    one that never had any stays RUNNING forever (a worker killed between ask and its heartbeat
    thread's first write, as a fresh-clone test run caught).
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        study._storage.record_heartbeat(trial._trial_id)


def fail_heartbeatless(study: optuna.Study) -> None:
    """Fail, as Optuna fails a stale trial (and so queue again), a RUNNING trial that never had a heartbeat.

    `first_heartbeat` leaves the milliseconds between `ask` and its write: a worker killed there
    leaves a trial that Optuna's sweep (`fail_stale_trials`) never sees, since it judges heartbeats
    only. Such a trial is failed once it started longer ago than the grace period (a minute by
    default). Its start is the asking machine's clock, so clock skew between machines counts against that.
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.storages._rdb import models

    backend = study._storage._backend
    if not is_heartbeat_enabled(backend):
        return
    trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # stored times are naive UTC
    query = sqlalchemy.select(trials.c.trial_id).where(
        trials.c.study_id == study._study_id,
        trials.c.state == TrialState.RUNNING,
        trials.c.datetime_start < now - datetime.timedelta(seconds=backend.grace_period),
        ~sqlalchemy.exists().where(beats.c.trial_id == trials.c.trial_id),
    )
    with backend.engine.connect() as connection:
        heartbeatless = connection.execute(query).scalars().all()
    retry = backend.get_heartbeat_stale_trial_callback()
    for trial_id in heartbeatless:
        try:
            failed = backend.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        if failed and retry is not None:
            retry(study, backend.get_trial(trial_id))


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Optuna's heartbeat for `trial` while the block runs, as optimize() keeps one (ask and tell do not)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def complete_attrs(
    study: optuna.Study, keys: Iterable[str], numbers: Collection[int] | None = None
) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """(number, value, the user attrs among `keys`) of every complete trial (or of those numbered
    `numbers`), by number, in one query."""
    query, bound = _COMPLETE, {"study": study._study_id, "keys": list(keys)}
    if numbers is not None:
        query, bound = _COMPLETE_OF, bound | {"numbers": list(numbers)}
    trials: dict[int, tuple[float, dict[str, Any]]] = {}
    with engine_of(study).connect() as connection:
        for number, value, value_type, key, value_json in connection.execute(query, bound):
            _, attrs = trials.setdefault(number, (_INFINITE.get(value_type, value), {}))
            if key is not None:
                attrs[key] = json.loads(value_json)
    for number in sorted(trials):
        yield number, *trials[number]


def complete_values(study: optuna.Study) -> list[tuple[int, float]]:
    """(number, value) of every complete trial, in one query."""
    with engine_of(study).connect() as connection:
        rows = connection.execute(_VALUES, {"study": study._study_id}).all()
    return [(number, _INFINITE.get(value_type, value)) for number, value, value_type in rows]


def state_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials the study holds in each state (lower-case state names, zeros included), in one query."""
    with engine_of(study).connect() as connection:
        found = dict(connection.execute(_STATES, {"study": study._study_id}).all())
    return {state.name.lower(): found.get(state.name, 0) for state in optuna.trial.TrialState}


@dataclass(frozen=True)
class TrialArtifact:
    """An artifact `optuna.artifacts.upload_artifact` recorded with a trial (a system attr of the trial)."""

    number: int
    state: TrialState
    artifact_id: str
    filename: str


def trial_artifacts(study: optuna.Study) -> list[TrialArtifact]:
    """Every artifact recorded with the study's trials, in one query.

    A record the dashboard deleted (it writes JSON null in its place) is no artifact.
    """
    with engine_of(study).connect() as connection:
        rows = connection.execute(_ARTIFACTS, {"study": study._study_id, "pattern": f"{ARTIFACTS_ATTR_PREFIX}%"}).all()
    found = []
    for number, state, value_json in rows:
        meta = json.loads(json.loads(value_json))  # upload_artifact stores its JSON text as a JSON string
        if meta is not None:
            found.append(TrialArtifact(number, TrialState[state], meta["artifact_id"], meta["filename"]))
    return sorted(found, key=lambda a: a.number)


def forget_trial_artifact(study: optuna.Study, number: int, artifact_id: str) -> None:
    """Delete trial `number`'s record of an artifact, finished or not (the file in the store is the caller's)."""
    with engine_of(study).begin() as connection:
        connection.execute(
            _FORGET, {"key": ARTIFACTS_ATTR_PREFIX + artifact_id, "study": study._study_id, "number": number}
        )


# What `PenalizedTPESampler` subtracts from TPE's acquisition: given the study, the (sub)space being
# sampled and TPE's candidates (each parameter's internal values, one array entry per candidate), an
# array of one penalty per candidate, in the acquisition's units (a log ratio).
Penalty = Callable[[optuna.Study, dict[str, BaseDistribution], dict[str, np.ndarray]], np.ndarray]


class PenalizedTPESampler(optuna.samplers.TPESampler):
    """TPE that picks, of its candidates, the one with the largest log l(x) - log g(x) - penalty(x).

    TPE draws `n_ei_candidates` points from the good trials' density l(x) and keeps the one with
    the largest l(x) / g(x); Optuna has no hook to weigh that choice, so `_sample` (which knows the
    study and subspace) and `_compute_acquisition_func` (which scores the candidates) are extended.
    """

    def __init__(self, *, penalty: Penalty, **tpe: Any) -> None:
        super().__init__(**tpe)
        self._penalty = penalty
        self._sampling: tuple[optuna.Study, dict[str, BaseDistribution]] | None = None

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._sampling = (study, search_space)
        try:
            return super()._sample(study, trial, search_space)
        finally:
            self._sampling = None

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any, mpe_above: Any) -> np.ndarray:
        scores = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._sampling is None:
            return scores
        study, search_space = self._sampling
        return scores - self._penalty(study, search_space, samples)
