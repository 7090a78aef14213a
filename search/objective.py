"""One trial: the space picks a config, the trainer fits it, the Optuna trial records what happened."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import optuna

from search._keras import keras, runtime_started
from search.backends import Peer, SizeAwarePruner
from search.costs import latency_ms, trainable_params
from search.data import Dataset
from search.kept import KeptModels
from search.progress import Progress
from search.record import FailReason, TrialPlan, TrialRecord
from search.spec import StudySpec, library_versions
from search.train import release_memory, train
from search.trials import TrialFailed, begin_trial
from spaces import get_space


class TrainingDiverged(TrialFailed):
    """The loss became NaN or infinite: the trial is recorded as failed and the study goes on."""


class Objective:
    """One trial: the space picks a config, the trainer fits it, the trial records what happened."""

    def __init__(
        self,
        spec: StudySpec,
        data: Dataset,
        n_trials: int,
        progress: Progress,
        models: KeptModels | None = None,
        *,
        pruner: SizeAwarePruner | None = None,
    ) -> None:
        """`pruner`: the backend's `epoch_pruner`, which each trial consults after each epoch (None: Optuna's)."""
        self.spec, self.n_trials, self.progress, self.models, self.pruner = spec, n_trials, progress, models, pruner
        self.data = data.subset(spec.subset)
        self.space = get_space(spec.space)
        self.last_number: int | None = None
        # Who to ask if a trial hangs: the process running the study (its trials' processes die with it).
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        begin_trial(self, trial)
        plan = TrialPlan.from_attrs(trial.user_attrs)
        seed = self.spec.seed + trial.number
        if plan.baseline:  # the note's reference model, which `full`'s network cannot express
            config = self.spec.reference().replace(seed=seed)
        else:
            config = self.space(trial, self.spec.base().replace(seed=seed))
        _record(trial, TrialRecord(config=config.to_dict()))  # before training: a killed trial keeps it too
        last_epoch = plan.epochs or config.epochs
        # The baseline is the yardstick: never pruned, so every study can be ranked against it.
        reporter = _EpochReporter(
            trial,
            self.spec,
            self.progress,
            last_epoch,
            prunable=not plan.baseline,
            pruner=self.pruner,
            images=self.data.x_val if "latency" in self.spec.objectives else None,
        )
        result = train(
            config,
            self.data,
            [reporter],
            monitor=self.spec.metric,
            epochs=last_epoch,
            initial_epoch=plan.initial_epoch,
            initial_weights=plan.initial_weights,
            save_weights=plan.save_weights,
            # A paused trial never completes, so its model is never kept: not worth saving.
            save_model=self.models.scratch_path(trial.number) if self.models and not plan.pause else None,
        )
        reason = f"loss became NaN at epoch {result.first_epoch + result.epochs_run - 1}" if result.diverged else ""
        record = TrialRecord(
            param_count=result.params,
            epochs_run=result.epochs_run,
            first_epoch=result.first_epoch,
            best_epoch=result.best_epoch,
            seconds=round(result.seconds, 2),
            history=result.history,
            backend=self.spec.backend,
            seed=config.seed,
            dataset=self.data.checksum,
            versions=library_versions(),
            fail=FailReason.DIVERGED if result.diverged else None,
            fail_message=reason,
        )
        _record(trial, record)
        if result.diverged:
            raise TrainingDiverged(reason)
        if reporter.pruned_at:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        if plan.pause:
            raise optuna.TrialPruned(f"paused after epoch {last_epoch}, to be continued if promoted")
        if not self.spec.multi_objective:
            return result.best()
        costs = {"params": reporter.trainable_params, "latency": reporter.latency_ms}
        return [result.best(), *(costs[name] for name in self.spec.objectives[1:])]

    def can_fork(self) -> bool:
        """A process that has run TensorFlow already cannot fork safely (search/_keras.py)."""
        return not runtime_started()

    def release_memory(self) -> None:
        release_memory()


def _record(trial: optuna.Trial, record: TrialRecord) -> None:
    for key, value in record.to_attrs().items():
        trial.set_user_attr(key, value)


class _EpochReporter(keras.callbacks.Callback):
    """Reports each epoch's objective to Optuna (learning curves, pruning) and to the progress bar.

    It records the model's costs as soon as they are known (search/costs.py), so a pruned or
    killed trial has them too. A multi-objective trial takes no report (Optuna refuses one): its
    curve is its `history`, and only the driver's own `pruner` can stop it.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        spec: StudySpec,
        progress: Progress,
        last_epoch: int,
        *,
        prunable: bool,
        pruner: SizeAwarePruner | None,
        images: np.ndarray | None,
    ) -> None:
        """`images`: where the latency is measured after the first epoch; None where it is not an objective."""
        super().__init__()
        self.trial, self.spec, self.progress, self.last_epoch = trial, spec, progress, last_epoch
        self.prunable, self.pruner, self.images = prunable, pruner, images
        self.pruned_at = 0
        self.scores: list[float] = []
        self.peers: list[Peer] = []
        self.trainable_params: int | None = None
        self.latency_ms: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.trainable_params = trainable_params(self.model)
        _record(self.trial, TrialRecord(trainable_params=self.trainable_params))
        if self.pruner is not None and self.prunable:
            self.peers = self.pruner.peers(self.trial.study, self.trial.number)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.images is not None and self.latency_ms is None:
            self.latency_ms = latency_ms(self.model, self.images)
            _record(self.trial, TrialRecord(latency_ms=self.latency_ms))
        value = (logs or {}).get(self.spec.metric, math.nan)
        if not math.isfinite(value):
            return
        self.scores.append(value)
        if not self.spec.multi_objective:
            self.trial.report(value, step=epoch + 1)
        self.progress.epoch_finished(self.trial.number, epoch + 1, value)
        # After the last epoch the trial is finished anyway: its value stands, pruned or not.
        if self.prunable and epoch + 1 < self.last_epoch and self._should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True

    def _should_prune(self) -> bool:
        if self.pruner is None:
            return not self.spec.multi_objective and self.trial.should_prune()
        size = self.latency_ms if self.pruner.measure == "latency" else self.trainable_params
        return self.pruner.should_prune(self.peers, size, self.scores)
