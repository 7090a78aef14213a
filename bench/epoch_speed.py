"""Epoch time of the reference model: the project's trainer against the source note's script and the compute floor.

Interleaved rounds, median epoch time (the first epoch of every run, which traces and
compiles, is left out). Variants show what each trainer setting buys. The compute floor is
the epoch's float32 FLOPs divided by this machine's measured NumPy GEMM rate.

    python bench/epoch_speed.py --rounds 3 --epochs 3
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

from search import train as trainer
from search._keras import keras
from search.config import TrialConfig
from search.data import Dataset, load_mnist

# Variants of the project's trainer: (XLA, steps per execution). The first is what train() uses.
VARIANTS = {
    "trainer (as built)": (trainer.JIT_COMPILE, trainer.STEPS_PER_EXECUTION),
    "trainer, XLA, 50 steps/call": (True, 50),
    "trainer, XLA only (1 step/call)": (True, 1),
    "trainer, no XLA": (False, trainer.STEPS_PER_EXECUTION),
}


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def reference_script(data: Dataset, epochs: int) -> list[float]:
    """The note's way: float64 /255 arrays, one-hot labels, tf.data shuffle/batch/repeat, default compile."""
    import tensorflow as tf

    n_train, batch = len(data.x_train), 100
    x_train, x_val = data.x_train / 255.0, data.x_val / 255.0
    y_train, y_val = keras.utils.to_categorical(data.y_train), keras.utils.to_categorical(data.y_val)
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(n_train).batch(batch, True).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch)
    model = keras.Sequential([keras.layers.Input((28, 28)), keras.layers.Flatten()])
    for units in TrialConfig().hidden_units:
        model.add(keras.layers.Dense(units, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    timer = EpochTimer()
    model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=n_train // batch,
        validation_data=val_ds,
        validation_steps=int(np.ceil(len(x_val) / batch)),
        verbose=0,
        callbacks=[timer],
    )
    keras.backend.clear_session(free_memory=True)
    return timer.seconds[1:]


def project_trainer(data: Dataset, epochs: int, settings: tuple[bool, int]) -> list[float]:
    """search.train.train on the reference config, with the trainer's settings patched for variants."""
    saved = trainer.JIT_COMPILE, trainer.STEPS_PER_EXECUTION
    trainer.JIT_COMPILE, trainer.STEPS_PER_EXECUTION = settings
    try:
        timer = EpochTimer()
        trainer.train(TrialConfig(epochs=epochs), data, [timer])
        trainer.release_memory()
        return timer.seconds[1:]
    finally:
        trainer.JIT_COMPILE, trainer.STEPS_PER_EXECUTION = saved


def gemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    """float32 matrix-multiply rate of NumPy's BLAS on all cores (best of `repeats`)."""
    a, b = (np.random.default_rng(0).standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def epoch_gflop(n_train: int, n_val: int) -> float:
    """GFLOP of the reference model's Dense layers: forward + 2x backward on training images, forward on validation."""
    units = [784, *TrialConfig().hidden_units, 10]
    macs = sum(a * b for a, b in itertools.pairwise(units))
    return 2 * macs * (3 * n_train + n_val) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every variant")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is left out)")
    args = parser.parse_args()
    data = load_mnist()
    times: dict[str, list[float]] = {"reference script (note)": [], **{name: [] for name in VARIANTS}}
    for round_ in range(1, args.rounds + 1):
        times["reference script (note)"] += reference_script(data, args.epochs)
        for name, settings in VARIANTS.items():
            times[name] += project_trainer(data, args.epochs, settings)
        print(f"round {round_}: " + ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in times.items()), flush=True)
    gflops = gemm_gflops()
    work = epoch_gflop(len(data.x_train), len(data.x_val))
    floor = work / gflops
    reference = statistics.median(times["reference script (note)"])
    print(f"\nGEMM rate {gflops:.0f} GFLOP/s; one epoch = {work:.0f} GFLOP -> compute floor {floor:.2f} s\n")
    print("| variant | median epoch (s) | vs reference script | vs compute floor |\n|---|---|---|---|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median:.2f} | {median / reference:.2f}x | {median / floor:.1f}x |")


if __name__ == "__main__":
    main()
