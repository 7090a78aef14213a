"""The trial loop: run trials until a study holds enough, each in a process forked for it (a `TrialRunner`)."""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Protocol

import optuna
from optuna.trial import TrialState

from search.backends import Backend, Proposal, Stop
from search.forked import ChildDied, Forked
from search.kept import KeptModels
from search.optuna_internals import fail_heartbeatless, first_heartbeat, heartbeat, live_trial, stored_trial
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
    a learning curve in milliseconds (storage benchmarks, tests of many workers). Called, in the
    trial's own process, with the Optuna trial the loop asked for, a runner first calls
    `begin_trial`, reports each epoch, and returns the objective value (a list of them in a
    multi-objective study) or raises
    `optuna.TrialPruned` or a `TrialFailed`; it never tells the study, the loop does. `can_fork()` says whether
    this process may fork a trial's process; a trial run in this process instead is followed by
    `release_memory()`. With `models`, a runner saves a trial's model at `models.scratch_path(number)`,
    and the loop keeps it if the trial completes among the best (search/kept.py).
    """

    n_trials: int
    worker: str  # who runs the trial: "host:pid" of the process running the loop
    progress: Progress
    last_number: int | None  # the number of the trial the loop asked for last
    models: KeptModels | None  # where the study keeps its best trials' models; None: it keeps none

    def __call__(self, trial: optuna.Trial) -> float | list[float]: ...

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
            _fail_stale(study)
            continue
        if not now["waiting"]:
            proposal = backend.propose(study, seconds_left=deadline - time.monotonic(), budget=timeout or math.inf)
            if isinstance(proposal, Stop):
                objective.progress.note(f"{proposal.reason}; stopping")
                return
            if proposal is not None:
                enqueue(study, proposal)
        _train_next(study, backend, objective)
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


def enqueue(study: optuna.Study, proposal: Proposal) -> None:
    """Queue a trial the backend (or the driver: the baseline, the prior) chose, with its plan as user attrs."""
    study.enqueue_trial(proposal.params, user_attrs=proposal.plan.to_attrs())


def _train_next(study: optuna.Study, backend: Backend, objective: TrialRunner) -> None:
    """Ask for the next trial, run it in a process forked for it (search/forked.py), tell how it ended.

    This process asks and tells, so it knows the trial before it forks and records its end
    whatever happened in between: a trial whose process died (killed, out of memory) or was
    interrupted is failed with that reason. The trial's process only runs the trial (it reports
    its epochs, which is how the pruner stops it). A process that has run TensorFlow already (a
    notebook, the tests) cannot fork safely: it runs the trial here.
    """
    # Seeded from the study's trial count: a forked trial's process copies this one's sampler, random
    # state and all, so one sampler kept across trials would have every trial draw alike.
    study.sampler = backend.make_sampler(len(study.get_trials(deepcopy=False)))
    _fail_stale(study)  # as optimize() does before each trial
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for optimize(); this loop keeps the heartbeat itself.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    first_heartbeat(study, trial)  # before anything can kill this process: see its docstring
    objective.last_number = trial.number
    refused = backend.start_trial(study, trial)
    if refused:
        _fail(study, trial.number, FailReason.SURPLUS, f"surplus: {refused}")
        return
    try:
        if objective.can_fork():
            release_connections(study)
            child = Forked(functools.partial(_run, objective, trial))
            with heartbeat(study, trial):  # started after the fork: a thread must not be copied mid-query
                state, value = child.result()
        else:
            with heartbeat(study, trial):
                state, value = _run(objective, trial)
            objective.release_memory()
        with heartbeat(study, trial):  # an upload (to S3, say) may outlast the grace period
            backend.trial_ending(study, trial)  # before tell, as Optuna records artifacts only then
            if objective.models is not None:
                objective.models.trial_ended(study, trial, state, value)
    except KeyboardInterrupt:
        _fail(study, trial.number, FailReason.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM) while it ran")
        raise
    except ChildDied as died:
        _fail(study, trial.number, FailReason.KILLED, str(died))
        return
    except BaseException:
        _fail(study, trial.number, None, "")
        raise
    _tell(study, objective, trial.number, state, value)
    if objective.models is not None:
        objective.models.prune(study)


def _run(objective: TrialRunner, trial: optuna.Trial) -> tuple[TrialState, float | list[float] | None]:
    """The trial's own work, in its process: how it ended, and its value if complete."""
    try:
        return TrialState.COMPLETE, objective(trial)
    except optuna.TrialPruned:
        return TrialState.PRUNED, None  # Optuna takes its last reported value
    except TrialFailed:
        return TrialState.FAIL, None
    except optuna.exceptions.UpdateFinishedTrialError:
        # Another worker failed this trial as stale while it ran (its heartbeats came too late on a
        # starved machine) and queued it again; `_tell` notes it, and this worker goes on.
        return TrialState.FAIL, None


def _tell(
    study: optuna.Study, objective: TrialRunner, number: int, state: TrialState, value: float | list[float] | None
) -> None:
    try:
        study.tell(number, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=False)
    except Exception as error:
        if not stored_trial(study, number).state.is_finished():
            raise
        # Another worker failed this trial while it ran: its heartbeats came later than the grace
        # period (a machine or database too busy), so it was taken for a killed worker's and queued
        # again. Its outcome is stored; this worker goes on instead of dying of Optuna's complaint.
        objective.progress.note(
            f"trial {number} was failed as stale by another worker while it ran ({error!r}); "
            "it is queued again. Raise --heartbeat if this repeats"
        )


def _fail(study: optuna.Study, number: int, reason: FailReason | None, message: str) -> None:
    """Fail trial `number` with `reason`, unless it has ended already (told by its process, or failed as stale)."""
    trial = stored_trial(study, number)
    if trial.state != TrialState.RUNNING:
        return
    if reason is not None:
        _set_attrs(live_trial(study, trial), reason.to_attrs(message))
    study.tell(number, state=TrialState.FAIL)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():  # experimental since Optuna 2.9, and still how optimize() does it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    fail_heartbeatless(study)


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
