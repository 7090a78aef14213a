"""Tests for search/train.py: real Keras training on a tiny slice of the real MNIST, and the LR schedules."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import pytest

from search.config import TrialConfig
from search.data import Dataset
from search.train import TrialResult, learning_rate_at, train

# One hidden layer of 64 on 2,000 images: about 1 s per epoch on 2 CPU cores. At lr 0.003 it
# reached val_accuracy 0.802 then 0.856 in two epochs (at the default 0.001 only 0.778).
TINY = TrialConfig(hidden_units=(64,), epochs=2, batch_size=100, learning_rate=0.003)
TINY_PARAMS = 784 * 64 + 64 + 64 * 10 + 10
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


@pytest.fixture(scope="module")
def tiny_run(tiny_mnist: Dataset) -> TrialResult:
    return train(TINY, tiny_mnist)


def test_tiny_run_learns(tiny_run: TrialResult) -> None:
    assert tiny_run.best() >= 0.80, tiny_run.history
    assert tiny_run.history["loss"][1] < tiny_run.history["loss"][0]


def test_tiny_run_records_every_epoch(tiny_run: TrialResult) -> None:
    assert set(METRICS) <= set(tiny_run.history)
    for name in METRICS:
        assert len(tiny_run.history[name]) == 2, name
        assert all(math.isfinite(v) for v in tiny_run.history[name]), name
    assert tiny_run.history["learning_rate"] == pytest.approx([0.003, 0.003])
    assert tiny_run.epochs_run == 2
    assert tiny_run.first_epoch == 1
    assert tiny_run.best_epoch in (1, 2)
    assert tiny_run.best() == max(tiny_run.history["val_accuracy"])
    assert tiny_run.best("val_loss") == tiny_run.history["val_loss"][tiny_run.best_epoch - 1]
    assert tiny_run.params == TINY_PARAMS
    assert tiny_run.seconds > 0
    assert not tiny_run.diverged
    assert tiny_run.stopped_by == ""
    assert tiny_run.monitor == "val_accuracy"


def test_same_seed_gives_the_same_history(tiny_mnist: Dataset, tiny_run: TrialResult) -> None:
    # Measured bit-exact on the 2-core CPU (oneDNN, jit_compile=True): weights, shuffling and
    # the fit loop are all seeded by config.seed, and train() clears the session each time.
    again = train(TINY, tiny_mnist)
    assert again.history == tiny_run.history
    assert again.best_epoch == tiny_run.best_epoch


def test_another_seed_gives_another_history(tiny_mnist: Dataset, tiny_run: TrialResult) -> None:
    other = train(TINY.replace(seed=1), tiny_mnist)
    assert other.history["loss"] != tiny_run.history["loss"]


def test_divergence_stops_at_the_first_nan_epoch(tiny_mnist: Dataset) -> None:
    # SGD at lr 10 with an L2 factor of 1 multiplies every kernel by (1 - 2*10*1) = -19 per
    # step: the weights overflow float32 within the first epoch's 20 steps, so the loss is NaN.
    config = TINY.replace(optimizer="sgd", learning_rate=10.0, l2=1.0, epochs=3)
    result = train(config, tiny_mnist)
    assert result.diverged
    assert result.stopped_by == "nan"
    assert result.epochs_run == 1
    assert len(result.history["loss"]) == 1
    assert not math.isfinite(result.history["loss"][0])


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.stop_training = True


def test_a_callback_can_stop_training(tiny_mnist: Dataset) -> None:
    result = train(TINY.replace(epochs=3), tiny_mnist, callbacks=[_StopAfterFirstEpoch()])
    assert result.epochs_run == 1
    assert result.stopped_by == "stopped"
    assert not result.diverged
    assert result.best_epoch == 1


def test_step_schedule_changes_the_optimizer_rate(tiny_mnist: Dataset) -> None:
    config = TINY.replace(lr_schedule="step", lr_decay_factor=0.5, lr_decay_epochs=1, epochs=3)
    result = train(config, tiny_mnist)
    assert result.history["learning_rate"] == pytest.approx([0.003, 0.0015, 0.00075], rel=1e-6)


def test_a_cosine_training_anneals_over_the_epochs_it_runs(tiny_mnist: Dataset, tmp_path: Path) -> None:
    # A study of 10 epochs whose pruner pauses the trial at epoch 1, then continues it to epoch 3:
    # each stretch anneals on its own, and the continuation restarts at the full rate.
    config = TINY.replace(lr_schedule="cosine", epochs=10)
    weights = tmp_path / "paused.weights.h5"
    paused = train(config, tiny_mnist, epochs=1, save_weights=weights)
    assert paused.history["learning_rate"] == pytest.approx([0.0015], rel=1e-6)
    promoted = train(config, tiny_mnist, initial_weights=weights, initial_epoch=1, epochs=3)
    expected = [0.003 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 3)]
    assert promoted.history["learning_rate"] == pytest.approx(expected, rel=1e-6)


def test_continuing_from_saved_weights(tiny_mnist: Dataset, tiny_run: TrialResult, tmp_path: Path) -> None:
    weights = tmp_path / "parent.weights.h5"
    parent = train(TINY, tiny_mnist, save_weights=weights)
    assert weights.is_file()
    assert parent.best_epoch == 2  # so the saved weights are the last epoch's

    child = train(TINY, tiny_mnist, initial_weights=weights, initial_epoch=2, epochs=3)
    assert child.first_epoch == 3
    assert child.epochs_run == 1
    assert child.best_epoch == 3
    assert child.best() == child.history["val_accuracy"][0]
    parent_last, fresh_first = parent.history["loss"][-1], tiny_run.history["loss"][0]
    child_first = child.history["loss"][0]
    # The continued epoch starts where the parent stopped, not from random weights.
    assert abs(child_first - parent_last) < abs(child_first - fresh_first), (fresh_first, parent_last, child_first)
    assert child_first < parent_last * 1.2


def test_learning_rate_at_constant_and_plateau_start() -> None:
    for schedule in ("constant", "plateau"):
        config = TrialConfig(learning_rate=0.01, lr_schedule=schedule)
        assert [learning_rate_at(config, e) for e in range(6)] == [0.01] * 6


def test_learning_rate_at_step() -> None:
    config = TrialConfig(learning_rate=0.1, lr_schedule="step", lr_decay_factor=0.5, lr_decay_epochs=2)
    rates = [learning_rate_at(config, e) for e in range(6)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_learning_rate_at_exponential() -> None:
    config = TrialConfig(learning_rate=0.1, lr_schedule="exponential", lr_decay_factor=0.5, lr_decay_epochs=2)
    rates = [learning_rate_at(config, e) for e in range(5)]
    assert rates == pytest.approx([0.1 * 0.5 ** (e / 2) for e in range(5)])
    assert rates[2] == pytest.approx(0.05)
    assert rates[4] == pytest.approx(0.025)


def test_learning_rate_at_cosine_anneals_over_the_epochs_trained() -> None:
    config = TrialConfig(learning_rate=0.1, lr_schedule="cosine", epochs=10)
    rates = [learning_rate_at(config, e) for e in range(10)]
    assert rates[0] == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.05)) / 2)
    assert rates == sorted(rates, reverse=True)
    # Each epoch at its middle: the curve is symmetric about the half, and the last epoch is near zero.
    assert [a + b for a, b in zip(rates, reversed(rates), strict=True)] == pytest.approx([0.1] * 10)
    assert rates[-1] < 0.001
    # A training that continues from epoch 3 to 9 (a promoted trial's stretch) restarts the curve over it.
    stretch = [learning_rate_at(config, e, first=3, end=9) for e in range(3, 9)]
    assert stretch == pytest.approx([0.1 * (1 + math.cos(math.pi * (k + 0.5) / 6)) / 2 for k in range(6)])
    assert stretch[0] > 0.095 and stretch[-1] < 0.002
    # One epoch alone runs at the curve's mean, half the rate.
    assert learning_rate_at(config, 0, first=0, end=1) == pytest.approx(0.05)
