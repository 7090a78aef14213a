"""The study driver: a study's identity and settings, the trial loop, and running or joining a study."""

from __future__ import annotations

import functools
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from search._keras import runtime_started
from search.backends import PRUNERS, Backend, get_backend
from search.config import OBJECTIVES, TrialConfig
from search.data import load_mnist
from search.errors import UserError
from search.forked import ChildDied, Forked
from search.objective import Objective, SurplusTrial, TrainingDiverged, library_versions
from search.progress import Progress
from search.storage import HEARTBEAT_SECONDS, open_storage, stored_trial
from search.train import release_memory
from search.workers import run_workers
from spaces import get_space, params_for, prior

# Settings that define what a study's trials mean; a study name re-used with other values is refused.
IDENTITY = ("space", "backend", "objective", "pruner", "epochs", "subset")
_POLL_SECONDS = 5
# A space where every trial fails would otherwise run forever: failed trials don't count as finished.
MAX_FAILURES_IN_A_ROW = 10
# The driver's trial lines say what happened; Optuna's own logs would repeat it, with a traceback
# for every trial the driver fails on purpose (diverged, interrupted, surplus).
optuna.logging.set_verbosity(optuna.logging.ERROR)


@dataclass(frozen=True)
class StudySpec:
    """What a study searches and how; stored as study user attrs so readers need only the storage."""

    space: str
    backend: str
    objective: str = "val_accuracy"
    pruner: str = "hyperband"
    epochs: int = 20
    subset: int = 0  # train on the first `subset` training images (quick looks, tests); 0 = all 50,000
    seed: int = 0
    baseline: bool = True  # a new study's trial 0 is the reference model, to measure the search against
    prior: bool = True  # ... and its next one the space's best known config (spaces.PRIORS), a head start
    command: str = ""

    def base(self) -> TrialConfig:
        """The config every trial starts from: the reference model, with this study's epochs and seed."""
        return TrialConfig(epochs=self.epochs, seed=self.seed)

    @property
    def direction(self) -> str:
        return "maximize" if OBJECTIVES[self.objective] == "max" else "minimize"

    def attrs(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "backend": self.backend,
            "objective": self.objective,
            "pruner": self.pruner,
            "epochs": self.epochs,
            "subset": self.subset,
            "seed": self.seed,
            "command": self.command,
            "base_config": self.base().to_dict(),
            "versions": library_versions(),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudySpec:
        return cls(**{k: attrs[k] for k in (*IDENTITY, "seed", "command")}, baseline=False, prior=False)


def open_study(storage: optuna.storages.BaseStorage, name: str, spec: StudySpec, backend: Backend) -> optuna.Study:
    """Create the study, or load it after checking it was made with the same settings."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=spec.direction,
        sampler=backend.sampler,
        pruner=backend.pruner,
        load_if_exists=True,
    )
    recorded = study.user_attrs
    if not recorded:
        for key, value in {**spec.attrs(), **backend.describe()}.items():
            study.set_user_attr(key, value)
        if spec.baseline:
            study.enqueue_trial(params_for(spec.space, spec.base()), user_attrs={"baseline": True})
        if spec.prior and (known := prior(spec.space, spec.base())) is not None:
            study.enqueue_trial(params_for(spec.space, known), user_attrs={"prior": True})
        return study
    for key in IDENTITY:
        if recorded.get(key) != getattr(spec, key):
            raise UserError(
                f"study '{name}' was made with {key}={recorded.get(key)!r}, not {getattr(spec, key)!r}; "
                f"run it with {key}={recorded.get(key)!r} or pick another --study name"
            )
    return study


def load_spec(storage: optuna.storages.BaseStorage, name: str) -> StudySpec:
    """The settings of an existing study (for workers that join it), or a UserError."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise UserError(f"no study named '{name}' in the storage; known: {', '.join(known) or 'none'}") from None
    if not set(IDENTITY) <= set(study.user_attrs):
        raise UserError(f"study '{name}' was not made by `search run`; it has no space/backend settings")
    return StudySpec.from_attrs(study.user_attrs)


def counts(study: optuna.Study) -> dict[str, int]:
    """How many trials the study holds in each state (lower-case state names)."""
    result = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        result[trial.state.name.lower()] += 1
    return result


def run_trials(
    study: optuna.Study, backend: Backend, objective: Objective, n_trials: int, timeout: float | None = None
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
        if trial.user_attrs.get("fail_reason", "").startswith("surplus"):
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


def _train_next(study: optuna.Study, backend: Backend, objective: Objective) -> None:
    """Run the next trial in a process forked for it (search/forked.py); sets `objective.last_number`.

    A trial whose process died (killed, out of memory) is recorded as failed here. A process
    that has run TensorFlow already (a notebook, the tests) cannot fork safely: it trains here.
    """
    before = objective.last_number
    count = len(study.get_trials(deepcopy=False))
    if runtime_started():
        _one_trial(study, backend, objective, count)
        release_memory()
        return
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
            optuna.Trial(study, trial._trial_id).set_user_attr("fail_reason", str(died))
            study.tell(trial.number, state=TrialState.FAIL)


def _one_trial(study: optuna.Study, backend: Backend, objective: Objective, count: int) -> int | None:
    """One trial, in its own process: sample, train, record."""
    if backend.make_sampler is not None:
        # The fork copied the driver's sampler, random state and all: every trial would draw alike.
        study.sampler = backend.make_sampler(count)
    study.optimize(objective, n_trials=1, catch=(TrainingDiverged, SurplusTrial))
    return objective.last_number


def _newest_trial_of(study: optuna.Study, worker: str, *, after: int | None) -> int | None:
    """The number of the newest trial `worker` began after trial `after`, if any."""
    mine = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("worker") == worker and (after is None or t.number > after)
    ]
    return max(mine, default=None)


def run_study(
    spec: StudySpec,
    *,
    study: str,
    storage: str,
    n_trials: int,
    timeout: float | None,
    workers: int = 1,
    heartbeat: int = HEARTBEAT_SECONDS,
) -> int:
    """Create or resume `study` and run it until it holds `n_trials` finished trials (or time is up).

    With `workers` > 1 the trials run in that many `search worker` processes on this machine.
    """
    _check(spec)
    opened_storage = open_storage(storage, heartbeat=heartbeat)
    # Each trial's sampler is seeded from this and the study's trial count (Backend.make_sampler):
    # a resumed study draws new values, as an uninterrupted one would.
    backend = get_backend(spec.backend)(
        seed=spec.seed, pruner=spec.pruner, epochs=spec.epochs, study=study, spec=spec, storage=storage, workers=workers
    )
    opened = open_study(opened_storage, study, spec, backend)
    opened.set_user_attr("trials", n_trials)  # what workers joining later aim for
    opened.set_user_attr("heartbeat", heartbeat)  # ... and how often they show they are alive
    if workers > 1:
        status = run_workers(study=study, storage=storage, n_trials=n_trials, timeout=timeout, workers=workers)
        _summary(opened, Progress(n_trials, spec.objective))
        return status
    return _work(opened, backend, spec, n_trials, timeout)


def join_study(*, study: str, storage: str, n_trials: int | None, timeout: float | None) -> int:
    """Join an existing study as one more worker, with the settings it was created with."""
    found = open_storage(storage)
    spec = load_spec(found, study)
    # All workers judge staleness by the study's heartbeat: one with a shorter grace period than
    # the others would fail their live trials.
    opened_storage = open_storage(storage, heartbeat=_heartbeat(found, study))
    # Each worker samples with its own seed, or workers started together would pick the same params.
    seed = spec.seed + 1 + os.getpid()
    backend = get_backend(spec.backend)(
        seed=seed, pruner=spec.pruner, epochs=spec.epochs, study=study, spec=spec, storage=storage
    )
    opened = open_study(opened_storage, study, spec, backend)
    return _work(opened, backend, spec, n_trials or opened.user_attrs.get("trials", 1), timeout)


def _heartbeat(storage: optuna.storages.BaseStorage, name: str) -> int:
    """The heartbeat interval the study's `search run` set (studies from before it: the default)."""
    return storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get("heartbeat", HEARTBEAT_SECONDS)


def _check(spec: StudySpec) -> None:
    get_space(spec.space)
    get_backend(spec.backend)
    if spec.pruner not in PRUNERS:
        raise UserError(f"unknown pruner '{spec.pruner}'; known pruners: {', '.join(PRUNERS)}")
    if spec.objective not in OBJECTIVES:
        raise UserError(f"unknown objective '{spec.objective}'; known objectives: {', '.join(OBJECTIVES)}")


def _work(study: optuna.Study, backend: Backend, spec: StudySpec, n_trials: int, timeout: float | None) -> int:
    data = load_mnist()
    progress = Progress(n_trials, spec.objective)
    now = counts(study)
    progress.note(
        f"study '{study.study_name}': space {spec.space}, backend {spec.backend}, pruner {spec.pruner}, "
        f"{spec.objective}, up to {spec.epochs} epochs; {now['complete'] + now['pruned']} of {n_trials} trials done"
    )
    objective = Objective(spec, data, n_trials, progress)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_trials(study, backend, objective, n_trials, timeout)
    except KeyboardInterrupt:
        progress.note(
            f"interrupted: trial {objective.last_number} was recorded as failed, finished trials are kept; "
            f"resume with: {spec.command}"
        )
        return 130
    except sqlalchemy.exc.OperationalError as error:
        raise UserError(
            f"the storage failed mid-search ({str(error.orig).splitlines()[0]}); finished trials are kept; "
            f"resume with: {spec.command}"
        ) from None
    _summary(study, progress)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _summary(study: optuna.Study, progress: Progress) -> None:
    now = counts(study)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    surplus = sum(t.user_attrs.get("fail_reason", "").startswith("surplus") for t in failed)
    progress.note(
        f"done: {now['complete']} complete, {now['pruned']} pruned, {now['fail'] - surplus} failed trials in "
        f"'{study.study_name}'" + (f" ({surplus} more left untrained: other workers covered them)" if surplus else "")
    )
    if now["complete"]:
        best = study.best_trial
        progress.note(
            f"best: trial {best.number}, {progress.objective} {best.value:.4f}; "
            f"export it with: make export STUDY={study.study_name} OUT=best.yaml"
        )
