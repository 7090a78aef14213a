"""Real trials: the space picks a config in the loop's process, and `run_trial` trains it in the trial's own."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import optuna

from search._keras import keras, runtime_started
from search.config import TrialConfig
from search.costs import latency_ms, trainable_params
from search.data import Dataset
from search.kept import KeptModels
from search.progress import Progress
from search.record import FailReason, TrialPlan, TrialRecord
from search.reporting import Report
from search.spec import StudySpec, library_versions
from search.train import release_memory, train
from search.trials import Prepared
from spaces import get_space


class Objective:
    """Real trials: the space picks each one's config in the loop's process, its own process trains it."""

    def __init__(self, spec: StudySpec, data: Dataset, progress: Progress, models: KeptModels | None = None) -> None:
        self.spec, self.progress, self.models = spec, progress, models
        self.data = data.subset(spec.subset)
        self.space = get_space(spec.space)

    def prepare(self, trial: optuna.Trial, plan: TrialPlan) -> Prepared:
        seed = self.spec.seed + trial.number
        if plan.baseline:  # the note's reference model, which `full`'s network cannot express
            config = self.spec.reference().replace(seed=seed)
        else:
            config = self.space(trial, self.spec.base().replace(seed=seed))
        # A paused trial never completes, so its model is never kept: not worth saving.
        save_model = self.models.scratch_path(trial.number) if self.models and not plan.pause else None
        return Prepared(
            TrialRecord(config=config.to_dict()),
            plan.epochs or config.epochs,
            functools.partial(run_trial, self.spec, config, plan, self.data, save_model=save_model),
        )

    def can_fork(self) -> bool:
        """A process that has run TensorFlow already cannot fork safely (search/_keras.py)."""
        return not runtime_started()

    def release_memory(self) -> None:
        release_memory()


def run_trial(
    spec: StudySpec, config: TrialConfig, plan: TrialPlan, data: Dataset, report: Report, *, save_model: Path | None
) -> TrialRecord:
    """Train `config` as `plan` asks, telling `report` each epoch; what the trial leaves. It knows no study."""
    reporter = _EpochReporter(report, spec.metric, images=data.x_val if "latency" in spec.objectives else None)
    result = train(
        config,
        data,
        [reporter],
        monitor=spec.metric,
        epochs=plan.epochs,  # None: the config's (train owns that default)
        initial_epoch=plan.initial_epoch,
        initial_weights=plan.initial_weights,
        save_weights=plan.save_weights,
        save_model=save_model,
    )
    costs = {"params": reporter.trainable_params, "latency": reporter.latency_ms}
    value = [result.best(), *(costs[name] for name in spec.objectives[1:])] if spec.multi_objective else result.best()
    last = result.first_epoch + result.epochs_run - 1
    return TrialRecord(
        param_count=result.params,
        epochs_run=result.epochs_run,
        first_epoch=result.first_epoch,
        best_epoch=result.best_epoch,
        seconds=round(result.seconds, 2),
        history=result.history,
        backend=spec.backend,
        seed=config.seed,
        dataset=data.checksum,
        versions=library_versions(),
        fail=FailReason.DIVERGED if result.diverged else None,
        fail_message=f"loss became NaN at epoch {last}" if result.diverged else "",
        value=value,
    )


class _EpochReporter(keras.callbacks.Callback):
    """Tells the trial's `report` each epoch's objective, and stops training where it answers so (pruned).

    It reports the model's costs as soon as they are known (search/costs.py), so a pruned or
    killed trial has them too.
    """

    def __init__(self, report: Report, metric: str, *, images: np.ndarray | None) -> None:
        """`images`: where the latency is measured after the first epoch; None where it is not an objective."""
        super().__init__()
        self.report, self.metric, self.images = report, metric, images
        self.trainable_params: int | None = None
        self.latency_ms: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.trainable_params = trainable_params(self.model)
        self.report.record(TrialRecord(trainable_params=self.trainable_params))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.images is not None and self.latency_ms is None:
            self.latency_ms = latency_ms(self.model, self.images)
            self.report.record(TrialRecord(latency_ms=self.latency_ms))
        value = (logs or {}).get(self.metric, math.nan)
        if math.isfinite(value) and self.report.epoch(epoch + 1, value):
            self.model.stop_training = True
