"""Keras Tuner's oracles as backends (`kt-random`, `kt-bayesian`, `kt-hyperband`); the one module importing it.

The oracle chooses each trial's values; the driver trains the trial and records it like any other.
The oracle's own state (its trials, Hyperband's brackets, the random state) and Hyperband's weights
live in `.kt/<study>/` beside the storage, so running the same command again continues the search.
"""

from __future__ import annotations

import fcntl
import importlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import optuna
import threadpoolctl
from optuna.trial import FrozenTrial, TrialState

from search.backends import _kt_internals as kt_internals
from search.backends._base import Backend, BackendFactory, Proposal, Stop
from search.backends._kt_adapter import learn_space
from search.backends._kt_hyperband import hyperband_plan, sweep_weights
from search.config import OBJECTIVES, TrialConfig
from search.errors import UserError
from search.record import TrialPlan, TrialRecord
from search.spec import StudySpec
from search.storage import study_folder
from spaces import get_space

KT_FOLDER = ".kt"
TUNER_ID = "tuner0"  # one process runs a Keras Tuner study (see `_lock`), so one tuner asks the oracle
_STOPPED = "Keras Tuner's oracle triggered exit: its draws keep repeating tried points (the space looks exhausted)"
_IDLE = "Keras Tuner's oracle is waiting for trials that are still running elsewhere"


def _keras_tuner() -> Any:
    """Keras Tuner, imported on first use: it loads TensorFlow, which commands that never train
    (rank, export, dashboard, --help) should not wait for."""
    importlib.import_module("search._keras")  # first: Keras on TensorFlow, whatever keras.json says
    import keras_tuner

    return keras_tuner


class KerasTunerBackend(Backend):
    """A Keras Tuner oracle behind the driver's queue.

    Each trial the oracle creates is proposed with its values and `kt_trial_id`; each finished
    trial is reported back (per-epoch metrics, then COMPLETED or FAILED). The oracle is opened on
    first use, after the driver has checked that the study's settings match.
    """

    def __init__(
        self, make_oracle: Callable[[Any], Any], oracle_class: str, spec: StudySpec, folder: Path, seed: int
    ) -> None:
        # Every trial is the oracle's, proposed with its values: Optuna's sampler is never consulted.
        super().__init__(
            pruner=optuna.pruners.NopPruner(), make_sampler=lambda _: optuna.samplers.RandomSampler(seed=seed)
        )
        self.make_oracle, self.oracle_class, self.spec, self.folder = make_oracle, oracle_class, spec, folder
        self.oracle: Any = None
        self._lock_file: IO | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "oracle_class": self.oracle_class, "kt_folder": str(self.folder)}

    def propose(self, study: optuna.Study, seconds_left: float = math.inf, budget: float = math.inf) -> Proposal | Stop:
        oracle = self._open(study)
        # The Bayesian oracle's thousands of tiny matrix products ran 10x slower with BLAS threads than
        # with one on a busy 2-core CPU (30 s against 2.8 s a proposal, measured).
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            trial = oracle.create_trial(TUNER_ID)
        if trial.status != _keras_tuner().engine.trial.TrialStatus.RUNNING:
            return Stop(_STOPPED if trial.status == _keras_tuner().engine.trial.TrialStatus.STOPPED else _IDLE)
        plan = TrialPlan(kt_trial_id=trial.trial_id)
        if "tuner/epochs" in trial.hyperparameters.values:
            plan = hyperband_plan(oracle, plan, trial.hyperparameters.values, self.folder)
        return Proposal(_params(trial.hyperparameters), plan)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if TrialPlan.from_attrs(trial.user_attrs).kt_trial_id is None:
            return  # the baseline trial: the study's reference point, not one of the oracle's
        oracle = self._open(study)
        _report(oracle, trial)
        if isinstance(oracle, _keras_tuner().oracles.HyperbandOracle):
            sweep_weights(oracle, self.folder)

    def _open(self, study: optuna.Study) -> Any:
        """The oracle: new, or reloaded from the folder after checking it belongs to this study."""
        if self.oracle is not None:
            return self.oracle
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        oracle = self.make_oracle(kt_space(self.spec.space, self.spec.base()))
        oracle.verbose = 0  # the driver's trial lines and bar say it
        kt_internals.place(oracle, self.folder)
        trials = _by_kt_id(study)
        if (self.folder / "oracle.json").exists():
            self._reload(oracle, trials)
        elif trials:
            raise UserError(
                f"study '{study.study_name}' has Keras Tuner trials but no oracle state in {self.folder} "
                "(a Keras Tuner study continues only beside its folder); restore it or pick another --study"
            )
        _reconcile(oracle, study, trials)
        self.oracle = oracle
        return oracle

    def _reload(self, oracle: Any, trials: dict[str, FrozenTrial]) -> None:
        try:
            oracle.reload()
        except (RuntimeError, ValueError, KeyError, OSError) as error:
            raise UserError(
                f"cannot resume the Keras Tuner search in {self.folder} ({str(error).splitlines()[0]}); "
                "move that folder away and pick another --study"
            ) from None
        strangers = [kt_id for kt_id in oracle.end_order if kt_id not in trials]
        if strangers:
            raise UserError(
                f"{self.folder} holds Keras Tuner trials ({', '.join(strangers[:3])}) that study "
                f"'{self.folder.name}' in this storage lacks (was the database replaced?); "
                "move that folder away or pick another --study"
            )

    def _lock(self) -> None:
        """Holds the folder for this process: two processes writing one oracle's files would corrupt it."""
        handle = (self.folder / "lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UserError(
                f"another process is running the Keras Tuner search in {self.folder}; a Keras Tuner study "
                "runs in one process: wait for it, or use an Optuna backend for several workers"
            ) from None
        self._lock_file = handle


def kt_space(space: str, base: TrialConfig) -> Any:
    """Space `space` as Keras Tuner's `HyperParameters`: every parameter, with its range, scale and condition."""
    return learn_space(get_space(space), base, _keras_tuner().HyperParameters())


def _params(hps: Any) -> dict[str, Any]:
    """The active values of the space's parameters, as plain Python values inside their ranges."""
    params = {}
    for param in hps.space:
        if param.name not in hps.values or not hps.is_active(param):
            continue
        value = hps.values[param.name]
        value = value.item() if hasattr(value, "item") else value
        if hasattr(param, "min_value"):
            # Bayesian optimization may land on the bound of [0, 1], which maps a hair past the range's end.
            value = type(value)(min(max(value, param.min_value), param.max_value))
        params[param.name] = value
    return params


def _by_kt_id(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The study's latest Optuna trial for each Keras Tuner trial id."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ids = [(TrialPlan.from_attrs(t.user_attrs).kt_trial_id, t) for t in trials]
    return {kt_id: t for kt_id, t in ids if kt_id is not None}


def _reconcile(oracle: Any, study: optuna.Study, trials: dict[str, FrozenTrial]) -> None:
    """Matches the trials a stopped run left open in the oracle (reload queues them all for a retry).

    A trial the storage holds as finished is reported now; one it holds as queued stays the
    oracle's ongoing trial, reported when the driver has run it; one that was interrupted (FAIL)
    or never reached the storage is handed out again. A RUNNING one is dead, as this process
    holds the folder's lock: it is failed here, so that the oracle hands it out again instead of
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
            _report(oracle, trial)


def _report(oracle: Any, trial: FrozenTrial) -> None:
    """Tells the oracle how Optuna trial `trial` went: its per-epoch metrics, then how it ended."""
    record = TrialRecord.from_attrs(trial.user_attrs)
    kt_id = record.plan.kt_trial_id
    if kt_id in oracle.end_order:
        return  # reported while reconciling
    kt_trial = oracle.trials[kt_id]
    status = _keras_tuner().engine.trial.TrialStatus
    if trial.state == TrialState.COMPLETE:
        history, first = record.history, record.first_epoch
        objective = oracle.objective.name
        for i, value in enumerate(history[objective]):
            if math.isfinite(value):
                metrics = {name: values[i] for name, values in history.items() if i < len(values)}
                oracle.update_trial(kt_id, metrics, step=first - 1 + i)
        kt_trial.status = status.COMPLETED
    else:
        kt_trial.status, kt_trial.message = status.FAILED, record.fail_message or "failed"
    oracle.end_trial(kt_trial)
    # end_trial saves the state before it lets go of the trial, and a reload would hand it out again.
    oracle.save()


def kt_folder(storage: str, study: str) -> Path:
    """Where study `study` keeps Keras Tuner's state: `.kt/<study>/` beside a SQLite file, else here."""
    return study_folder(storage, study, KT_FOLDER)


def _factory(oracle_class: str, settings: Callable[[int], dict[str, Any]]) -> BackendFactory:
    def factory(
        *,
        seed: int,
        pruner: str,
        epochs: int,
        spec: StudySpec | None = None,
        storage: str = "",
        study: str = "",
        workers: int = 1,
    ) -> Backend:
        """Keras Tuner's oracles prune by their own schedule (Hyperband's brackets): `pruner` is not used."""
        if spec is None or not study:
            raise TypeError("a Keras Tuner backend needs the study's spec and name")
        if workers > 1:
            raise UserError(
                f"--backend {spec.backend} runs in one process (Keras Tuner's oracle keeps its state in one "
                "folder); drop --workers, or use an Optuna backend for several workers"
            )

        def make_oracle(hp: Any) -> Any:
            return getattr(_keras_tuner().oracles, oracle_class)(
                objective=_keras_tuner().Objective(spec.metric, direction=OBJECTIVES[spec.metric]),
                hyperparameters=hp,
                seed=seed + 1,  # Keras Tuner takes seed 0 for "none" and draws one at random
                # The driver decides when failures end a study, as for every backend; Keras
                # Tuner's own limit raises in the middle of its bookkeeping.
                max_consecutive_failed_trials=sys.maxsize,
                **settings(epochs),
            )

        return KerasTunerBackend(make_oracle, oracle_class, spec, kt_folder(storage, study), seed)

    return factory


KT_BACKENDS: dict[str, BackendFactory] = {
    # No max_trials: the study's --trials and --timeout bound the search, as for Optuna's backends.
    "kt-random": _factory("RandomSearchOracle", lambda epochs: {"max_trials": None}),
    "kt-bayesian": _factory("BayesianOptimizationOracle", lambda epochs: {"max_trials": None}),
    # Brackets of max_epochs / 3^k epochs; iterations without end (None), for the same reason.
    "kt-hyperband": _factory(
        "HyperbandOracle", lambda epochs: {"max_epochs": epochs, "factor": 3, "hyperband_iterations": None}
    ),
}
