"""Keras Tuner's oracle state in the study itself, kept in step with the study's trials.

The oracle's state and each of its trials' are study system attrs. So a Keras Tuner study lives
wholly in its storage, as an Optuna one does: copy the database, or
point another machine at the PostgreSQL server, and the same command continues it. The oracle
still reads and writes files (its `reload()`, and `save()` on every change), so each process
gives it a scratch folder: on opening, the stored state is laid out there and reloaded; after
each change the driver makes (a trial created, a trial ended) the changed trial and then the
oracle are written back, in the order Keras Tuner saves them.

Studies made by versions before this one kept the state in `.kt/<study>/` beside the storage;
`load` reads it from there while the storage holds none, and the next `save` moves it in.

The oracle's state and the study's trials change in separate writes, so a run that stopped
between them leaves the two out of step; `reconcile` brings them together when the study opens.
Trial statuses are Keras Tuner's `TrialStatus` strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.backends import _kt_internals as kt_internals
from search.optuna_internals import set_study_system_attr, study_system_attrs
from search.record import TrialPlan, TrialRecord

ORACLE_KEY = "kt:oracle"
TRIAL_PREFIX = "kt:trial:"
TUNER_ID = "tuner0"  # one process runs a Keras Tuner study (`storage.hold`), so one tuner asks the oracle

State = tuple[dict[str, Any], dict[str, dict[str, Any]]]  # the oracle's state, and each trial's by its id


def load(study: optuna.Study, legacy: Path) -> State | None:
    """The oracle state the study holds (or an older version left in `legacy`); None for a new search."""
    attrs = study_system_attrs(study)
    if ORACLE_KEY not in attrs:
        return kt_internals.read_folder(legacy)
    trials = {key.removeprefix(TRIAL_PREFIX): value for key, value in attrs.items() if key.startswith(TRIAL_PREFIX)}
    return attrs[ORACLE_KEY], trials


def save(study: optuna.Study, oracle: Any, kt_ids: Iterable[str]) -> None:
    """Write the trials `kt_ids`, then the oracle's own state, to the study."""
    for kt_id in kt_ids:
        set_study_system_attr(study, TRIAL_PREFIX + kt_id, oracle.trials[kt_id].get_state())
    set_study_system_attr(study, ORACLE_KEY, oracle.get_state())


def by_kt_id(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The study's latest Optuna trial for each Keras Tuner trial id."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ids = [(TrialPlan.from_attrs(t.user_attrs).kt_trial_id, t) for t in trials]
    return {kt_id: t for kt_id, t in ids if kt_id is not None}


def reconcile(oracle: Any, study: optuna.Study, trials: dict[str, FrozenTrial]) -> None:
    """Matches the trials a stopped run left open in the oracle (reload queues them all for a retry).

    A trial the storage holds as finished is reported now; one it holds as queued stays the
    oracle's ongoing trial, reported when the driver has run it; one that was interrupted (FAIL)
    or never reached the storage is handed out again. A RUNNING one is dead, as this process
    holds the study (`storage.hold`): it is failed here, so that the oracle hands it out again instead of
    Optuna's heartbeat retrying it as well.
    """
    queue = kt_internals.retry_queue(oracle)
    for kt_id in list(queue):
        trial = trials.get(kt_id)
        if kt_id in oracle.end_order:
            queue.remove(kt_id)  # ended, but saved before the oracle let go of it
            continue
        if trial is not None and trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            continue
        if trial is None or trial.state == TrialState.FAIL:
            continue
        queue.remove(kt_id)
        oracle.ongoing_trials[TUNER_ID] = oracle.trials[kt_id]
        if trial.state == TrialState.COMPLETE:
            report(oracle, trial)


def report(oracle: Any, trial: FrozenTrial) -> None:
    """Tells the oracle how Optuna trial `trial` went: its per-epoch metrics, then how it ended."""
    record = TrialRecord.from_attrs(trial.user_attrs)
    kt_id = record.plan.kt_trial_id
    if kt_id in oracle.end_order:
        return  # reported while reconciling
    kt_trial = oracle.trials[kt_id]
    if trial.state == TrialState.COMPLETE:
        history, first = record.history, record.first_epoch
        objective = oracle.objective.name
        for i, value in enumerate(history[objective]):
            if math.isfinite(value):
                metrics = {name: values[i] for name, values in history.items() if i < len(values)}
                oracle.update_trial(kt_id, metrics, step=first - 1 + i)
        kt_trial.status = "COMPLETED"
    else:
        kt_trial.status, kt_trial.message = "FAILED", record.fail_message or "failed"
    oracle.end_trial(kt_trial)
    # end_trial saves the state before it lets go of the trial, and a reload would hand it out again.
    oracle.save()
