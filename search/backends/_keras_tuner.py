"""Keras Tuner's oracles as backends (`kt-random`, `kt-bayesian`, `kt-hyperband`); the one module importing it.

The oracle chooses each trial's values; the driver trains the trial and records it like any other.
The oracle's own state (its trials, Hyperband's brackets, the random state) lives in the study's
system attrs (search/backends/_kt_state.py) and Hyperband's weights are artifacts of the trials
that left them (search/weights.py), so the study's storage holds the whole search: running the
same command again, here or on another machine that reaches the storage, continues it.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from typing import Any

import optuna
import threadpoolctl
from optuna.trial import FrozenTrial

from search.backends import _kt_internals as kt_internals
from search.backends import _kt_state as kt_state
from search.backends._base import Backend, BackendFactory, Proposal, Stop
from search.backends._kt_adapter import learn_space
from search.backends._kt_hyperband import hyperband_plan, needed_weights
from search.config import OBJECTIVES, TrialConfig
from search.errors import UserError
from search.forked import scratch_folder
from search.record import TrialPlan
from search.spec import StudySpec
from search.storage import Held, hold, study_folder
from search.weights import ContinuationWeights
from spaces import get_space

KT_FOLDER = ".kt"  # where versions before the state moved into the storage kept it, beside a SQLite file
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
    first use, after the driver has checked that the study's settings match; it keeps its files
    in a scratch folder of this process, and the study keeps its state.
    """

    def __init__(
        self,
        make_oracle: Callable[[Any], Any],
        oracle_class: str,
        spec: StudySpec,
        storage: str,
        study: str,
        seed: int,
    ) -> None:
        # Every trial is the oracle's, proposed with its values: Optuna's sampler is never consulted.
        super().__init__(
            pruner=optuna.pruners.NopPruner(), make_sampler=lambda _: optuna.samplers.RandomSampler(seed=seed)
        )
        self.make_oracle, self.oracle_class, self.spec, self.storage = make_oracle, oracle_class, spec, storage
        self.legacy = study_folder(storage, study, KT_FOLDER)
        self.folder = scratch_folder(self, "search-kt-")
        self.weights = ContinuationWeights(storage, study)
        self.oracle: Any = None
        self._held: Held | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "oracle_class": self.oracle_class}

    def propose(self, study: optuna.Study, seconds_left: float = math.inf, budget: float = math.inf) -> Proposal | Stop:
        oracle = self._open(study)
        # The Bayesian oracle's thousands of tiny matrix products ran 10x slower with BLAS threads than
        # with one on a busy 2-core CPU (30 s against 2.8 s a proposal, measured).
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            trial = oracle.create_trial(kt_state.TUNER_ID)
        running = trial.status == _keras_tuner().engine.trial.TrialStatus.RUNNING
        kt_state.save(study, oracle, [trial.trial_id] if running else [])
        if not running:
            return Stop(_STOPPED if trial.status == _keras_tuner().engine.trial.TrialStatus.STOPPED else _IDLE)
        plan = TrialPlan(kt_trial_id=trial.trial_id)
        if "tuner/epochs" in trial.hyperparameters.values:
            numbers = {kt_id: t.number for kt_id, t in kt_state.by_kt_id(study).items()}
            plan = hyperband_plan(oracle, plan, trial.hyperparameters.values, numbers)
        return Proposal(_params(trial.hyperparameters), plan)

    def start_trial(self, study: optuna.Study, trial: optuna.Trial) -> str | None:
        self.weights.start(study, trial, TrialPlan.from_attrs(trial.user_attrs))
        return None

    def trial_ending(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.weights.keep(study, trial)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if TrialPlan.from_attrs(trial.user_attrs).kt_trial_id is None:
            return  # the baseline trial: the study's reference point, not one of the oracle's
        oracle = self._open(study)
        kt_state.report(oracle, trial)
        kt_state.save(study, oracle, [TrialPlan.from_attrs(trial.user_attrs).kt_trial_id])
        if isinstance(oracle, _keras_tuner().oracles.HyperbandOracle):
            needed = needed_weights(oracle)
            self.weights.forget(study, {t.number for kt_id, t in kt_state.by_kt_id(study).items() if kt_id in needed})

    def _open(self, study: optuna.Study) -> Any:
        """The oracle: new, or reloaded from the study's state after checking it matches the study's trials."""
        if self.oracle is not None:
            return self.oracle
        self._hold(study)
        oracle = self.make_oracle(kt_space(self.spec.space, self.spec.base()))
        oracle.verbose = 0  # the driver's trial lines and bar say it
        kt_internals.place(oracle, self.folder)
        trials = kt_state.by_kt_id(study)
        state = kt_state.load(study, self.legacy)
        if state is not None:
            kt_internals.write_folder(self.folder, *state)
            self._reload(oracle, study, trials)
        elif trials:
            raise UserError(
                f"study '{study.study_name}' has Keras Tuner trials but no oracle state, in the storage or in "
                f"{self.legacy}; restore it or pick another --study"
            )
        kt_state.reconcile(oracle, study, trials)
        kt_state.save(study, oracle, oracle.trials)  # all once: reconciling changed some, and an older state moves in
        self.oracle = oracle
        return oracle

    def _reload(self, oracle: Any, study: optuna.Study, trials: dict[str, FrozenTrial]) -> None:
        try:
            oracle.reload()
        except (RuntimeError, ValueError, KeyError, OSError) as error:
            raise UserError(
                f"cannot resume the Keras Tuner search of study '{study.study_name}' ({str(error).splitlines()[0]}); "
                "pick another --study"
            ) from None
        strangers = [kt_id for kt_id in oracle.end_order if kt_id not in trials]
        if strangers:
            raise UserError(
                f"the Keras Tuner state of study '{study.study_name}' names trials ({', '.join(strangers[:3])}) that "
                f"the study in this storage lacks (was the database replaced, beside {self.legacy}?); "
                "move that folder away or pick another --study"
            )

    def _hold(self, study: optuna.Study) -> None:
        """Holds the study's oracle for this process: two processes writing one oracle's state would corrupt it."""
        self._held = hold(study, self.storage, "kt")
        if self._held is None:
            raise UserError(
                f"another process is running the Keras Tuner search of study '{study.study_name}'; a Keras Tuner "
                "study runs in one process: wait for it, or use an Optuna backend for several workers"
            )


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
                f"--backend {spec.backend} runs in one process (Keras Tuner's oracle changes its state with "
                "every trial it hands out); drop --workers, or use an Optuna backend for several workers"
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

        return KerasTunerBackend(make_oracle, oracle_class, spec, storage, study, seed)

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
