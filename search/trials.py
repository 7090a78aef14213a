"""The trial loop: run trials until a study holds enough, each in a process forked for it (a `TrialRunner`)."""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Protocol

import optuna
from optuna.trial import TrialState

from search.backends import Backend
from search.forked import ChildDied, Forked
from search.optuna_internals import live_trial, stored_trial
from search.optuna_internals import state_counts as counts
from search.progress import Progress
from search.record import FailReason, TrialRecord
from search.storage import release_connections

_POLL_SECONDS = 5
# A space where every trial fails would otherwise run forever: failed trials don't count as finished.
MAX_FAILURES_IN_A_ROW = 10
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialFailed(Exception):
    """A trial its runner ended on purpose (diverged, surplus): recorded as failed, and the study goes on."""


class SurplusTrial(TrialFailed):
    """Other workers already cover the requested number of trials; this one is not run."""


class TrialRunner(Protocol):
    """What the loop runs for each trial, with nothing of TensorFlow in the loop itself.

    `search.objective.Objective` trains a model; `search.synthetic.SyntheticObjective` makes up
    a learning curve in milliseconds (storage benchmarks, tests of many workers). Called with
    the Optuna trial, a runner first calls `begin_trial`, reports each epoch, and returns the
    objective value or raises `optuna.TrialPruned` or a `TrialFailed`. `can_fork()` says whether
    this process may fork a trial's process; a trial run in this process instead is followed by
    `release_memory()`.
    """

    n_trials: int
    worker: str  # who runs the trial: "host:pid" of the process running the loop
    progress: Progress
    last_number: int | None  # the number of the trial begun last

    def __call__(self, trial: optuna.Trial) -> float: ...

    def can_fork(self) -> bool: ...

    def release_memory(self) -> None: ...


def begin_trial(runner: TrialRunner, trial: optuna.Trial) -> None:
    """What every trial does first: note its number, refuse it if surplus, record who runs it."""
    runner.last_number = trial.number
    _refuse_surplus(trial, runner.n_trials)
    _set_attrs(trial, TrialRecord(worker=runner.worker).to_attrs())


def run_trials(
    study: optuna.Study, backend: Backend, objective: TrialRunner, n_trials: int, timeout: float | None = None
) -> None:
    """Run trials until the study holds `n_trials` finished ones (complete or pruned), or time is up.

    Trials of other workers count too: while they run, this worker waits for them rather than
    starting more than were asked for, and takes over a killed worker's trial once its
    heartbeat has gone stale (Optuna fails it and queues it again with the same parameters).
    """
    deadline = time.monotonic() + timeout if timeout else math.inf
    failures_in_a_row = 0
    while time.monotonic() < deadline and failures_in_a_row < MAX_FAILURES_IN_A_ROW:
        now = counts(study)
        finished = now["complete"] + now["pruned"]
        if finished >= n_trials:
            return
        if not now["waiting"] and finished + now["running"] >= n_trials:
            time.sleep(_POLL_SECONDS)
            with warnings.catch_warnings():  # experimental since Optuna 2.9, and still how optimize() does it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            continue
        if not now["waiting"] and not backend.next_trial(study):
            objective.progress.note(f"{backend.stop_reason}; stopping")
            return
        _train_next(study, backend, objective)
        if objective.last_number is None:
            failures_in_a_row += 1
            continue
        trial = stored_trial(study, objective.last_number)
        backend.trial_finished(study, trial)
        if FailReason.from_attrs(trial.user_attrs) == FailReason.SURPLUS:
            continue
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        objective.progress.trial_finished(trial, study)
    if time.monotonic() >= deadline:
        objective.progress.note("time is up (--timeout): no new trial starts; run the same command to go on")
    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
        objective.progress.note(
            f"stopping: the last {failures_in_a_row} trials all failed; see their fail_reason in `search rank` "
            "and narrow the space (a learning rate too high makes the loss NaN)"
        )


def _train_next(study: optuna.Study, backend: Backend, objective: TrialRunner) -> None:
    """Run the next trial in a process forked for it (search/forked.py); sets `objective.last_number`.

    A trial whose process died (killed, out of memory) is recorded as failed here. A process
    that has run TensorFlow already (a notebook, the tests) cannot fork safely: it trains here.
    """
    before = objective.last_number
    count = len(study.get_trials(deepcopy=False))
    if not objective.can_fork():
        _one_trial(study, backend, objective, count)
        objective.release_memory()
        return
    release_connections(study)
    child = Forked(functools.partial(_one_trial, study, backend, objective, count))
    try:
        objective.last_number = child.result()
    except KeyboardInterrupt:
        objective.last_number = _newest_trial_of(study, objective.worker, after=before)
        raise
    except ChildDied as died:
        objective.last_number = _newest_trial_of(study, objective.worker, after=before)
        if objective.last_number is None:
            objective.progress.note(f"a trial's process ended before its trial began: {died}")
            return
        trial = stored_trial(study, objective.last_number)
        if trial.state == TrialState.RUNNING:
            _set_attrs(live_trial(study, trial), FailReason.KILLED.to_attrs(str(died)))
            study.tell(trial.number, state=TrialState.FAIL)


def _one_trial(study: optuna.Study, backend: Backend, objective: TrialRunner, count: int) -> int | None:
    """One trial, in its own process: sample, train, record."""
    if backend.make_sampler is not None:
        # The fork copied the driver's sampler, random state and all: every trial would draw alike.
        study.sampler = backend.make_sampler(count)
    try:
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    except Exception as error:
        if objective.last_number is None or not stored_trial(study, objective.last_number).state.is_finished():
            raise
        # Another worker failed this trial while it ran: its heartbeats came later than the grace
        # period (a machine or database too busy), so it was taken for a killed worker's and queued
        # again. Its outcome is stored; this worker goes on instead of dying of Optuna's complaint.
        objective.progress.note(
            f"trial {objective.last_number} was failed as stale by another worker while it ran ({error!r}); "
            "it is queued again. Raise --heartbeat if this repeats"
        )
    return objective.last_number


def _newest_trial_of(study: optuna.Study, worker: str, *, after: int | None) -> int | None:
    """The number of the newest trial `worker` began after trial `after`, if any."""
    mine = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if TrialRecord.from_attrs(t.user_attrs).worker == worker and (after is None or t.number > after)
    ]
    return max(mine, default=None)


def _refuse_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Fail this trial unrun when finished and lower-numbered running trials already make `n_trials`."""
    trials = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    ahead = [t for t in trials if t.state in FINISHED or t.number < trial.number]
    if len(ahead) >= n_trials:
        _set_attrs(trial, FailReason.SURPLUS.to_attrs("surplus: other workers already cover the requested trials"))
        raise SurplusTrial(f"the study already has its {n_trials} trials")


def _set_attrs(trial: optuna.Trial, attrs: dict) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
