"""The trial loop: run trials until a study holds enough, each in a process forked for it (a `TrialRunner`)."""

from __future__ import annotations

import functools
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import optuna
from optuna.trial import TrialState

from search.backends import Backend, Proposal, Stop
from search.forked import ChildDied, Forked
from search.kept import KeptModels
from search.optuna_internals import fail_heartbeatless, first_heartbeat, heartbeat, live_trial, stored_trial
from search.optuna_internals import state_counts as counts
from search.progress import Progress
from search.record import FailReason, TrialPlan, TrialRecord
from search.reporting import RemoteReport, Report, TrialReport
from search.storage import release_connections

_POLL_SECONDS = 5
# A space where every trial fails would otherwise run forever: failed trials don't count as finished.
MAX_FAILURES_IN_A_ROW = 10
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Prepared:
    """A trial ready to run: what it records before it trains, its last epoch, and the work its process does."""

    record: TrialRecord  # recorded before training, so a killed trial keeps it too (its config)
    epochs: int  # the last epoch it trains to: not pruned after it, its value stands
    work: Callable[[Report], TrialRecord]  # the training: knows no study, only its `Report`


class TrialRunner(Protocol):
    """What the loop runs for each trial, with nothing of TensorFlow in the loop itself.

    `search.objective.Objective` trains a model; `search.synthetic.SyntheticObjective` makes up
    a learning curve in milliseconds (storage benchmarks, tests of many workers). In the loop's
    process, `prepare(trial, plan)` samples the trial's params and says what to run; the work then
    runs in the trial's own process, telling its `Report` each epoch (which is how the pruner
    stops it), and returns the trial's record with its value. It never touches the study: the
    loop records, tells or fails the trial. `can_fork()` says whether this process may fork a
    trial's process; a trial run in this process instead is followed by `release_memory()`.
    With `models`, the work saves a complete trial's model at `models.scratch_path(number)`, and
    the loop keeps it if it is among the best (search/kept.py).
    """

    progress: Progress
    models: KeptModels | None  # where the study keeps its best trials' models; None: it keeps none

    def prepare(self, trial: optuna.Trial, plan: TrialPlan) -> Prepared: ...

    def can_fork(self) -> bool: ...

    def release_memory(self) -> None: ...


def run_trials(
    study: optuna.Study, backend: Backend, runner: TrialRunner, n_trials: int, timeout: float | None = None
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
                runner.progress.note(f"{proposal.reason}; stopping")
                return
            if proposal is not None:
                enqueue(study, proposal)
        trial = stored_trial(study, _train_next(study, backend, runner, n_trials))
        backend.trial_finished(study, trial)
        if FailReason.from_attrs(trial.user_attrs) == FailReason.SURPLUS:
            continue
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        runner.progress.trial_finished(trial, study)
    if time.monotonic() >= deadline:
        runner.progress.note("time is up (--timeout): no new trial starts; run the same command to go on")
    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
        runner.progress.note(
            f"stopping: the last {failures_in_a_row} trials all failed; see their fail_reason in `search rank` "
            "and narrow the space (a learning rate too high makes the loss NaN)"
        )


def enqueue(study: optuna.Study, proposal: Proposal) -> None:
    """Queue a trial the backend (or the driver: the baseline, the prior) chose, with its plan as user attrs."""
    study.enqueue_trial(proposal.params, user_attrs=proposal.plan.to_attrs())


def _train_next(study: optuna.Study, backend: Backend, runner: TrialRunner, n_trials: int) -> int:
    """Ask for the next trial, run it in a process forked for it (search/forked.py), tell how it ended; its number.

    This process asks, samples the trial's params, records and tells, so it knows the trial before
    it forks and records its end whatever happened in between: a trial whose process died
    (killed, out of memory) or was interrupted is failed with that reason. The trial's process
    only trains, and sends its epochs here, where the pruner judges them (search/reporting.py). A
    process that has run TensorFlow already (a notebook, the tests) cannot fork safely: it runs
    the trial here.
    """
    # Seeded from the study's trial count, so a resumed study or another worker does not draw the
    # same params again from the same seed.
    study.sampler = backend.make_sampler(len(study.get_trials(deepcopy=False)))
    _fail_stale(study)  # as optimize() does before each trial
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for optimize(); this loop keeps the heartbeat itself.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    first_heartbeat(study, trial)  # before anything can kill this process: see its docstring
    # Checked before the ask too (run_trials); again here, as other workers may have asked meanwhile.
    refused = _surplus(study, trial.number, n_trials) or backend.start_trial(study, trial)
    if refused:
        _fail(study, trial.number, FailReason.SURPLUS, f"surplus: {refused}")
        return trial.number
    try:
        _set_attrs(trial, TrialRecord(worker=f"{socket.gethostname()}:{os.getpid()}").to_attrs())
        plan = TrialPlan.from_attrs(trial.user_attrs)  # as the backend left it
        prepared = runner.prepare(trial, plan)
        _set_attrs(trial, prepared.record.to_attrs())
        # The baseline is the yardstick: never pruned, so every study can be ranked against it.
        report = TrialReport(
            trial, runner.progress, epochs=prepared.epochs, prunable=not plan.baseline, pruner=backend.epoch_pruner
        )
        if runner.can_fork():
            release_connections(study)
            child = Forked(functools.partial(_remotely, prepared.work), serve=report.serve)
            with heartbeat(study, trial):  # started after the fork: a thread must not be copied mid-query
                record = child.result()
        else:
            with heartbeat(study, trial):
                record = prepared.work(report)
            runner.release_memory()
        with heartbeat(study, trial):  # an upload (to S3, say) may outlast the grace period
            state = _state(trial, record, report, plan)
            backend.trial_ending(study, trial)  # before tell, as Optuna records artifacts only then
            if runner.models is not None:
                runner.models.trial_ended(study, trial, state, record.value)
    except KeyboardInterrupt:
        _fail(study, trial.number, FailReason.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM) while it ran")
        runner.progress.note(f"interrupted: trial {trial.number} was recorded as failed")
        raise
    except ChildDied as died:
        _fail(study, trial.number, FailReason.KILLED, str(died))
        return trial.number
    except BaseException:
        _fail(study, trial.number, None, "")
        raise
    _tell(study, runner, trial.number, state, record.value)
    if runner.models is not None:
        runner.models.prune(study)
    return trial.number


def _remotely(work: Callable[[Report], TrialRecord], ask: Callable) -> TrialRecord:
    """The trial's work in its own process, its reports sent to the loop's (search/forked.py)."""
    return work(RemoteReport(ask))


def _state(trial: optuna.Trial, record: TrialRecord, report: TrialReport, plan: TrialPlan) -> TrialState:
    """Records what the trial's work returned; how the trial ends: failed (diverged), pruned (or paused), complete."""
    try:
        _set_attrs(trial, record.to_attrs())
    except optuna.exceptions.UpdateFinishedTrialError:
        report.taken_over = True
    if report.taken_over or record.fail is not None:
        # Taken over: another worker failed it as stale while it ran and queued it again; `_tell` notes it.
        return TrialState.FAIL
    if report.pruned_at or plan.pause:  # a paused trial is continued later if promoted
        return TrialState.PRUNED  # Optuna takes its last reported value
    return TrialState.COMPLETE


def _tell(
    study: optuna.Study, runner: TrialRunner, number: int, state: TrialState, value: float | list[float] | None
) -> None:
    try:
        study.tell(number, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=False)
    except Exception as error:
        if not stored_trial(study, number).state.is_finished():
            raise
        # Another worker failed this trial while it ran: its heartbeats came later than the grace
        # period (a machine or database too busy), so it was taken for a killed worker's and queued
        # again. Its outcome is stored; this worker goes on instead of dying of Optuna's complaint.
        runner.progress.note(
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


def _surplus(study: optuna.Study, number: int, n_trials: int) -> str | None:
    """Why trial `number` is not run, when finished and lower-numbered running trials already make `n_trials`."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    ahead = [t for t in trials if t.state in FINISHED or t.number < number]
    return "other workers already cover the requested trials" if len(ahead) >= n_trials else None


def _set_attrs(trial: optuna.Trial, attrs: dict) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
