"""One trial: the space picks a config, the trainer fits it, the Optuna trial records what happened."""

from __future__ import annotations

import math
import os
import socket

import optuna

from search._keras import keras, runtime_started
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
        self, spec: StudySpec, data: Dataset, n_trials: int, progress: Progress, models: KeptModels | None = None
    ) -> None:
        self.spec, self.n_trials, self.progress, self.models = spec, n_trials, progress, models
        self.data = data.subset(spec.subset)
        self.space = get_space(spec.space)
        self.last_number: int | None = None
        # Who to ask if a trial hangs: the process running the study (its trials' processes die with it).
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial: optuna.Trial) -> float:
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
        reporter = _EpochReporter(trial, self.spec.objective, self.progress, last_epoch, prunable=not plan.baseline)
        result = train(
            config,
            self.data,
            [reporter],
            monitor=self.spec.objective,
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
        return result.best()

    def can_fork(self) -> bool:
        """A process that has run TensorFlow already cannot fork safely (search/_keras.py)."""
        return not runtime_started()

    def release_memory(self) -> None:
        release_memory()


def _record(trial: optuna.Trial, record: TrialRecord) -> None:
    for key, value in record.to_attrs().items():
        trial.set_user_attr(key, value)


class _EpochReporter(keras.callbacks.Callback):
    """Reports each epoch's objective to Optuna (learning curves, pruning) and to the progress bar."""

    def __init__(
        self, trial: optuna.Trial, objective: str, progress: Progress, last_epoch: int, *, prunable: bool
    ) -> None:
        super().__init__()
        self.trial, self.objective, self.progress, self.last_epoch = trial, objective, progress, last_epoch
        self.prunable = prunable
        self.pruned_at = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.objective, math.nan)
        if not math.isfinite(value):
            return
        self.trial.report(value, step=epoch + 1)
        self.progress.epoch_finished(self.trial.number, epoch + 1, value)
        # After the last epoch the trial is finished anyway: its value stands, pruned or not.
        if self.prunable and epoch + 1 < self.last_epoch and self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
