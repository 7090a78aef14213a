"""Evidence for augmentation: what it costs per epoch, and what it buys a `full` study on the same budget.

1. Epoch time of the reference model with no augmentation, affine augmentation, and affine plus
   elastic distortion, on all 50,000 training images, interleaved runs (the CPU is shared, so
   the median of the later epochs counts; each run's first epoch includes XLA compilation and
   is left out). Also checks that the augmented models keep `jit_compile=True` (no "Proceeding
   with jit_compile=False" warning), and times each augmentation layer alone inside an
   XLA-compiled loop (CPU time, steadier).
2. Two studies of the `full` space with the same backend, seed, trials, epochs and subset: one
   as the product runs it, one whose configs have augmentation reset to none. With the random
   sampler and the same seed both studies draw the same configs, so the trials pair up and
   differ only in augmentation. Pruning is off so every pair trains the same epochs.

Run: .venv/bin/python bench/augment.py [--subset 10000 --epochs 5 --trials 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from search._keras import keras
from search.config import TrialConfig
from search.data import Dataset, load_mnist
from search.model import build_model
from search.objective import Objective
from search.progress import Progress
from search.study import StudySpec, open_search
from search.train import train
from search.trials import run_trials
from spaces import full

AUGMENT_FIELDS = ("augment_translate", "augment_rotate", "augment_zoom")
# The middle of the `augment` space's ranges, for the timing runs.
TIMED_AUGMENTATION = {"augment_translate": 0.1, "augment_rotate": 10.0, "augment_zoom": 0.1}
# Simard et al. 2003's setting, the `augment` space's strongest.
TIMED_ELASTIC = {"augment_elastic_alpha": 34.0, "augment_elastic_sigma": 4.0}
ARMS = {
    "plain": {},
    "affine": TIMED_AUGMENTATION,
    "affine+elastic": {**TIMED_AUGMENTATION, **TIMED_ELASTIC},
}


class _EpochTimer(keras.callbacks.Callback):
    """Wall seconds and CPU seconds (all threads of this process) of each epoch.

    CPU seconds are the steadier measure on a shared machine: other processes stretch the wall
    clock of an epoch but not the work it does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.wall.append(time.perf_counter() - self.start[0])
        self.cpu.append(time.process_time() - self.start[1])


def time_epochs(data: Dataset, epochs: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per epoch (train + validation) of the reference model, for each of `ARMS`."""
    arms = {name: TrialConfig(epochs=epochs, **changes) for name, changes in ARMS.items()}
    seconds: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in arms}
    for round_ in range(rounds):
        for name, config in arms.items():
            timer = _EpochTimer()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = train(config, data, [timer])
            fallback = [str(w.message) for w in caught if "jit_compile" in str(w.message)]
            if fallback:
                raise SystemExit(f"{name}: XLA fell back: {fallback[0]}")
            seconds[name]["wall"] += timer.wall[1:]
            seconds[name]["cpu"] += timer.cpu[1:]
            wall, cpu = (", ".join(f"{s:.2f}" for s in values) for values in (timer.wall, timer.cpu))
            print(
                f"round {round_ + 1} {name:14s} wall [{wall}] cpu [{cpu}] val_accuracy {result.best():.4f}", flush=True
            )
    return seconds


def print_timing(seconds: dict[str, dict[str, list[float]]]) -> None:
    for clock in ("wall", "cpu"):
        for label, pick in (("median", statistics.median), ("min", min)):
            plain = pick(seconds["plain"][clock])
            arms = ", ".join(
                f"{arm} {pick(values[clock]):.2f} ({pick(values[clock]) / plain - 1:+.1%})"
                for arm, values in seconds.items()
                if arm != "plain"
            )
            print(f"{clock} s/epoch {label}: plain {plain:.2f}, {arms} ({len(seconds['plain'][clock])} epochs each)")


def time_layer(data: Dataset, name: str, steps: int = 50, repeats: int = 20) -> None:
    """CPU milliseconds of augmentation layer `name` alone per batch of 100, inside one XLA-compiled loop."""
    import tensorflow as tf  # here, after search._keras has imported it with its start-up notices hidden

    images = tf.constant(data.x_train[:100].astype("float32") / 255.0)
    layer = build_model(TrialConfig(**ARMS["affine+elastic"])).get_layer(name)

    @tf.function(jit_compile=True)
    def loop(x: tf.Tensor) -> tf.Tensor:
        total = tf.zeros(())
        for _ in tf.range(steps):
            total += tf.reduce_sum(layer(x, training=True))
        return total

    loop(images).numpy()  # compile
    start = time.process_time()
    for _ in range(repeats):
        loop(images).numpy()
    per_batch = (time.process_time() - start) / (steps * repeats)
    epoch = per_batch * 500
    print(f"layer {name} alone: {per_batch * 1e3:.3f} CPU ms per batch of 100 = {epoch:.2f} CPU s per 50k epoch")


def without_augmentation(trial: Any, base: TrialConfig) -> TrialConfig:
    """The `full` space with the same draws, and augmentation reset to none."""
    return full.suggest(trial, base).replace(**{name: 0.0 for name in AUGMENT_FIELDS})


def run_arm(data: Dataset, url: str, name: str, args: argparse.Namespace, augment: bool) -> optuna.Study:
    spec = StudySpec(
        space="full", backend="random", pruner="none", epochs=args.epochs, subset=args.subset, baseline=False
    )
    search = open_search(spec, url, name, seed=spec.seed)
    study, backend = search.study, search.backend
    objective = Objective(spec, data, Progress(args.trials, spec.objective))
    if not augment:
        # An instance attribute of this bench's objective only: no space is registered for it.
        objective.space = without_augmentation
    start = time.perf_counter()
    run_trials(study, backend, objective, args.trials)
    print(f"arm {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return study


def summarize(study: optuna.Study) -> dict[str, float]:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = max(trials, key=lambda t: t.value)
    history, at = best.user_attrs["history"], best.user_attrs["best_epoch"] - 1
    per_epoch = [t.user_attrs["seconds"] / t.user_attrs["epochs_run"] for t in trials]
    return {
        "best_trial": best.number,
        "best_val_accuracy": best.value,
        "train_loss": history["loss"][at],
        "val_loss": history["val_loss"][at],
        "gap": history["val_loss"][at] - history["loss"][at],
        "median_s_per_epoch": statistics.median(per_epoch),
        "mean_val_accuracy": statistics.mean(t.value for t in trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=10_000, help="training images per study trial")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per study trial")
    parser.add_argument("--trials", type=int, default=8, help="trials per study")
    parser.add_argument("--timing-epochs", type=int, default=4, help="epochs per timing run (the first is dropped)")
    parser.add_argument("--timing-rounds", type=int, default=4, help="interleaved timing runs per arm")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-studies", action="store_true")
    args = parser.parse_args()
    data = load_mnist()

    if not args.skip_timing:
        for name in ("augment", "elastic"):
            time_layer(data, name)
        print_timing(time_epochs(data, args.timing_epochs, args.timing_rounds))

    if not args.skip_studies:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'augment.db'}"
            studies = {
                "with": run_arm(data, url, "full-augment", args, True),
                "without": run_arm(data, url, "full-no-augment", args, False),
            }
            print_studies(studies)


def print_studies(studies: dict[str, optuna.Study]) -> None:
    print("| arm | best val_accuracy (trial) | train loss | val loss | gap | mean val_accuracy | median s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for arm, study in studies.items():
        s = summarize(study)
        print(
            f"| {arm} augmentation | {s['best_val_accuracy']:.4f} ({s['best_trial']}) | {s['train_loss']:.4f} | "
            f"{s['val_loss']:.4f} | {s['gap']:+.4f} | {s['mean_val_accuracy']:.4f} | {s['median_s_per_epoch']:.2f} |"
        )
    pairs = zip(*(study.get_trials(deepcopy=False) for study in studies.values()), strict=True)
    for a, b in pairs:
        config = a.user_attrs.get("config", {})
        drawn = ", ".join(f"{k.removeprefix('augment_')} {config.get(k)}" for k in AUGMENT_FIELDS)
        print(
            f"trial {a.number}: with {_value(a)} without {_value(b)}  ({drawn}; "
            f"{'-'.join(map(str, config.get('hidden_units', [])))}, {config.get('optimizer')}, "
            f"lr {config.get('learning_rate', 0):.2g})"
        )


def _value(trial: optuna.trial.FrozenTrial) -> str:
    return f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()


if __name__ == "__main__":
    main()
