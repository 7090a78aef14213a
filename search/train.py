"""The only place that fits a model: `train(config, data)` and the learning-rate schedules."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search._keras import keras, share_gpus
from search.config import OBJECTIVES, TrialConfig
from search.data import Dataset
from search.model import build_model

# XLA, and several steps per call of the compiled function: on a 2-core CPU Keras's default
# (no XLA on CPU, one step per call) spends more on dispatch than on a small MLP's maths.
# bench/epoch_speed.py measures each setting.
JIT_COMPILE = True
STEPS_PER_EXECUTION = 250


@dataclass(frozen=True)
class TrialResult:
    """What one training run produced; `history` holds one value per epoch run for each metric."""

    history: dict[str, list[float]]  # loss, accuracy, val_loss, val_accuracy, learning_rate
    best_epoch: int  # 1-based epoch of the best monitored value; the returned weights are from it
    first_epoch: int  # 1-based epoch of history[...][0] (> 1 when continuing from saved weights)
    params: int
    epochs_run: int
    seconds: float
    stopped_by: str = ""  # "" ran all epochs; "nan" diverged; "stopped" by early stopping or a callback
    monitor: str = "val_accuracy"

    @property
    def diverged(self) -> bool:
        """A loss became NaN or infinite; training stopped there."""
        return self.stopped_by == "nan"

    def best(self, metric: str | None = None) -> float:
        """The value of `metric` (default: the monitored one) at the best epoch."""
        values = self.history[metric or self.monitor]
        return values[self.best_epoch - self.first_epoch] if self.best_epoch else math.nan


def learning_rate_at(config: TrialConfig, epoch: int, first: int = 0, end: int | None = None) -> float:
    """The scheduled rate for a 0-based epoch of a training that runs epochs `first` .. `end` - 1.

    Plateau is adaptive and starts at the initial rate. `end` defaults to `config.epochs`.

    1. constant:    lr
    2. step:        lr * factor ** floor(epoch / period)
    3. exponential: lr * factor ** (epoch / period)
    4. cosine:      lr * (1 + cos(pi * (epoch - first + 1/2) / (end - first))) / 2

    Cosine anneals over the epochs this training runs, taken at each epoch's middle (the mean of
    the continuous curve over the epoch), so even a short training ends near zero: a trial paused
    at a rung is judged annealed, and a promoted trial restarts the curve over its next stretch
    (Loshchilov & Hutter's warm restarts), instead of every trial sitting on the flat top of a
    100-epoch curve that only the few trained to the end would ever come down.
    """
    lr, factor, period = config.learning_rate, config.lr_decay_factor, config.lr_decay_epochs
    if config.lr_schedule == "step":
        return lr * factor ** (epoch // period)
    if config.lr_schedule == "exponential":
        return lr * factor ** (epoch / period)
    if config.lr_schedule == "cosine":
        span = (end or config.epochs) - first
        return lr * (1 + math.cos(math.pi * (epoch - first + 0.5) / span)) / 2
    return lr


def train(
    config: TrialConfig,
    data: Dataset,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    *,
    monitor: str = "val_accuracy",
    initial_epoch: int = 0,
    epochs: int | None = None,
    initial_weights: Path | None = None,
    save_weights: Path | None = None,
    save_model: Path | None = None,
    full_train: bool = False,
) -> TrialResult:
    """Train `config` on the training split, validating on the validation split after each epoch.

    Args:
        callbacks: extra Keras callbacks (pruning, progress); one may stop training early.
        monitor: the validation metric whose best epoch is kept ("val_accuracy" or "val_loss").
        initial_epoch, epochs: train epochs `initial_epoch+1 .. epochs` (default `config.epochs`),
            continuing from `initial_weights` (a `.weights.h5` file) when given.
        save_weights, save_model: where to write the best epoch's weights / whole `.keras` model.
        full_train: train on training + validation images (validation numbers are then optimistic).
    """
    start = time.perf_counter()
    share_gpus()
    x_train, y_train = _training_arrays(data, full_train)
    model = build_model(config, data.inputs)
    model.compile(
        optimizer=_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=JIT_COMPILE,
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    if initial_weights is not None:
        # Build the optimizer first so its moments and step count load too, not only the weights.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(initial_weights)
    keeper = _KeepBest(monitor)
    stopper = _StopOnNaN()
    history = model.fit(
        x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=epochs or config.epochs,
        initial_epoch=initial_epoch,
        validation_data=(data.x_val, data.y_val),
        shuffle=True,
        verbose=0,
        callbacks=[stopper, *_schedule_callbacks(config, monitor, initial_epoch, epochs), keeper, *callbacks],
    ).history
    keeper.restore(model)
    if save_weights is not None:
        model.save_weights(save_weights)
    if save_model is not None:
        model.save(save_model)
    planned = (epochs or config.epochs) - initial_epoch
    return _result(model, history, keeper, stopper, planned, initial_epoch, time.perf_counter() - start)


def release_memory() -> None:
    """Free what finished trainings left in this process: Keras's graphs, layer names and weights.

    A search trains each trial in a process of its own (search/forked.py), which needs none of
    this (it cost 0.4-0.8 s a trial); code that trains many models in one process calls it after each.
    XLA's compiled programs stay all the same (BENCHMARKS.md "Memory").
    """
    keras.backend.clear_session(free_memory=True)
    gc.collect()


def _training_arrays(data: Dataset, full_train: bool) -> tuple[np.ndarray, np.ndarray]:
    if not full_train:
        return data.x_train, data.y_train
    return np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])


def _optimizer(config: TrialConfig) -> keras.optimizers.Optimizer:
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, momentum=config.momentum)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    if config.optimizer == "nadam":
        return keras.optimizers.Nadam(learning_rate=lr)
    return keras.optimizers.Adam(learning_rate=lr)


def _schedule_callbacks(
    config: TrialConfig, monitor: str, first: int, end: int | None
) -> list[keras.callbacks.Callback]:
    if config.lr_schedule == "plateau":
        schedule = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.lr_decay_factor, patience=config.lr_patience, verbose=0
        )
    else:
        schedule = keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate_at(config, epoch, first, end))
    if not config.early_stopping_patience:
        return [schedule]
    stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, mode=OBJECTIVES[monitor], patience=config.early_stopping_patience
    )
    return [schedule, stopping]


class _StopOnNaN(keras.callbacks.Callback):
    """Stops at the end of the first epoch whose training loss is not finite."""

    diverged = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not math.isfinite((logs or {}).get("loss", math.nan)):
            self.diverged = True
            self.model.stop_training = True


class _KeepBest(keras.callbacks.Callback):
    """Remembers the weights of the best epoch by `monitor`, to hand back the best model."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor, self.sign = monitor, 1.0 if OBJECTIVES[monitor] == "max" else -1.0
        self.best_epoch, self.best_score, self.weights = 0, -math.inf, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = self.sign * (logs or {}).get(self.monitor, math.nan)
        if math.isfinite(score) and score > self.best_score:
            self.best_epoch, self.best_score, self.weights = epoch + 1, score, self.model.get_weights()

    def restore(self, model: keras.Model) -> None:
        if self.weights is not None:
            model.set_weights(self.weights)


def _result(
    model: keras.Model,
    history: dict[str, list],
    keeper: _KeepBest,
    stopper: _StopOnNaN,
    planned: int,
    initial_epoch: int,
    seconds: float,
) -> TrialResult:
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
    clean = {name: [float(v) for v in history.get(name, [])] for name in metrics}
    epochs_run = len(clean["loss"])
    stopped_by = "nan" if stopper.diverged else ""
    if not stopped_by and epochs_run < planned:
        stopped_by = "stopped"
    return TrialResult(
        history=clean,
        best_epoch=keeper.best_epoch,
        first_epoch=initial_epoch + 1,
        params=model.count_params(),
        epochs_run=epochs_run,
        seconds=seconds,
        stopped_by=stopped_by,
        monitor=keeper.monitor,
    )
