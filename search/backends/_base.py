"""The contract every backend fulfils."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from search.backends._size_aware import SizeAwarePruner
from search.record import TrialPlan
from search.spec import StudySpec


@dataclass(frozen=True)
class Proposal:
    """A trial the backend chose itself (a promotion, a Keras Tuner draw): the driver queues it in the study."""

    params: dict[str, Any]
    plan: TrialPlan


@dataclass(frozen=True)
class Stop:
    """The backend has no new trial to offer; `reason` is the run's last line."""

    reason: str


@dataclass
class Backend:
    """How the next trial's hyperparameters are chosen, and whether trials may stop early.

    `sampler` and `pruner` go to the Optuna study. Before each trial the driver calls
    `propose(study, seconds_left, budget)` (the time left of the run's budget, and the budget;
    `inf` without one). The backend answers with a `Proposal` of its own, which the driver queues
    in the study; with None, and the study's sampler draws the trial; or with `Stop`.
    Once it has asked for the trial, before the trial runs, the driver calls `start_trial(study,
    trial)`, where a backend may set the trial's plan (or refuse the trial, saying why: it is then
    failed as surplus). When the trial's process has ended, before the trial is told, the driver
    calls `trial_ending(study, trial)` (where a backend keeps what the trial left for others:
    search/weights.py). After each trial the driver calls `trial_finished(study, trial)` with the
    recorded trial. The plan is `search.record.TrialPlan`, in user attrs.
    Each trial is asked for with the sampler `make_sampler(count)` makes for a study holding
    `count` trials (seeded from the backend's seed and `count`, so every trial draws afresh, in
    whichever process); it is the backend's one sampler (a backend whose trials are all enqueued
    makes one that is never consulted).
    `epoch_pruner`, where set, is a pruner the loop consults after each of a trial's epochs instead of
    Optuna's (search/backends/_size_aware.py: Optuna cannot prune a multi-objective trial).
    """

    pruner: optuna.pruners.BasePruner
    make_sampler: Callable[[int], optuna.samplers.BaseSampler]
    epoch_pruner: SizeAwarePruner | None = None

    def propose(
        self, study: optuna.Study, seconds_left: float = math.inf, budget: float = math.inf
    ) -> Proposal | Stop | None:
        return None

    def start_trial(self, study: optuna.Study, trial: optuna.Trial) -> str | None:
        return None

    def trial_ending(self, study: optuna.Study, trial: optuna.Trial) -> None:
        return None

    def trial_finished(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        """Settings worth recording with the study."""
        pruner = self.epoch_pruner or self.pruner
        return {"sampler_class": type(self.make_sampler(0)).__name__, "pruner_class": type(pruner).__name__}


class BackendFactory(Protocol):
    """Makes a study's backend; `BACKENDS` maps each `--backend` name to one.

    `seed` seeds the algorithm (each worker of a study has its own); `pruner` and `epochs` are the
    study's. Keras Tuner's backends also need the study's `spec`, its `storage` URL and `study`
    name (their state lives beside the storage), and refuse `workers` > 1.
    """

    def __call__(
        self,
        *,
        seed: int,
        pruner: str,
        epochs: int,
        spec: StudySpec | None = None,
        storage: str = "",
        study: str = "",
        workers: int = 1,
    ) -> Backend: ...
