"""The study driver: a study's identity, the objective (space -> config -> train) and the trial loop."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from search._keras import keras
from search.backends import PRUNERS, Backend, get_backend
from search.config import OBJECTIVES, TrialConfig
from search.data import Mnist, load_mnist
from search.errors import UserError
from search.progress import Progress
from search.storage import HEARTBEAT_SECONDS, open_storage
from search.train import train
from search.workers import run_workers
from spaces import baseline_params, get_space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
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
        return cls(**{k: attrs[k] for k in (*IDENTITY, "seed", "command")}, baseline=False)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite: the trial is recorded as failed and the study goes on."""


class SurplusTrial(Exception):
    """Other workers already cover the requested number of trials; this one is not trained."""


def library_versions() -> dict[str, str]:
    names = ("tensorflow", "keras", "keras-tuner", "optuna", "numpy")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


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
            study.enqueue_trial(baseline_params(spec.space, spec.base()), user_attrs={"baseline": True})
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


class Objective:
    """One trial: the space picks a config, the trainer fits it, the trial records what happened."""

    def __init__(self, spec: StudySpec, data: Mnist, n_trials: int, progress: Progress) -> None:
        self.spec, self.n_trials, self.progress = spec, n_trials, progress
        self.data = subset(data, spec.subset)
        self.space = get_space(spec.space)
        self.last_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_number = trial.number
        _refuse_surplus(trial, self.n_trials)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who to ask if it hangs
        base = self.spec.base().replace(seed=self.spec.seed + trial.number)
        config = self.space(trial, base)
        trial.set_user_attr("config", config.to_dict())
        attrs = trial.user_attrs
        last_epoch = attrs.get("epochs", config.epochs)
        reporter = _EpochReporter(trial, self.spec.objective, self.progress, last_epoch)
        result = train(
            config,
            self.data,
            [reporter],
            monitor=self.spec.objective,
            epochs=last_epoch,
            initial_epoch=attrs.get("initial_epoch", 0),
            initial_weights=attrs.get("initial_weights"),
            save_weights=attrs.get("save_weights"),
        )
        for key, value in {
            "param_count": result.params,
            "epochs_run": result.epochs_run,
            "first_epoch": result.first_epoch,
            "best_epoch": result.best_epoch,
            "seconds": round(result.seconds, 2),
            "history": result.history,
            "backend": self.spec.backend,
            "seed": config.seed,
            "dataset": self.data.checksum,
            "versions": library_versions(),
        }.items():
            trial.set_user_attr(key, value)
        if result.diverged:
            reason = f"loss became NaN at epoch {result.first_epoch + result.epochs_run - 1}"
            trial.set_user_attr("fail_reason", reason)
            raise TrainingDiverged(reason)
        if reporter.pruned_at:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        return result.best()


def subset(data: Mnist, n_images: int) -> Mnist:
    """The first `n_images` training images only (0 = all); validation and test stay whole."""
    if not n_images:
        return data
    return dataclasses.replace(data, x_train=data.x_train[:n_images], y_train=data.y_train[:n_images])


def _refuse_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Fail this trial untrained when finished and lower-numbered running trials already make `n_trials`."""
    trials = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    ahead = [t for t in trials if t.state in FINISHED or t.number < trial.number]
    if len(ahead) >= n_trials:
        trial.set_user_attr("fail_reason", "surplus: other workers already cover the requested trials")
        raise SurplusTrial(f"the study already has its {n_trials} trials")


class _EpochReporter(keras.callbacks.Callback):
    """Reports each epoch's objective to Optuna (learning curves, pruning) and to the progress bar."""

    def __init__(self, trial: optuna.Trial, objective: str, progress: Progress, last_epoch: int) -> None:
        super().__init__()
        self.trial, self.objective, self.progress, self.last_epoch = trial, objective, progress, last_epoch
        self.pruned_at = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.objective, math.nan)
        if not math.isfinite(value):
            return
        self.trial.report(value, step=epoch + 1)
        self.progress.epoch_finished(self.trial.number, epoch + 1, value)
        # After the last epoch the trial is finished anyway: its value stands, pruned or not.
        if epoch + 1 < self.last_epoch and self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


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
        study.optimize(objective, n_trials=1, catch=(TrainingDiverged, SurplusTrial), gc_after_trial=True)
        trial = _recorded(study, objective.last_number)
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


def _recorded(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The stored trial `number`, read by id: listing every trial after each one would cost O(n^2)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


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
    # A resumed study continues the sampler's random stream instead of replaying its first trials.
    seed = spec.seed + _trial_count(opened_storage, study)
    backend = get_backend(spec.backend)(
        seed=seed, pruner=spec.pruner, epochs=spec.epochs, study=study, spec=spec, storage=storage, workers=workers
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


def _trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        return storage.get_n_trials(storage.get_study_id_from_name(name))
    except KeyError:
        return 0


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
