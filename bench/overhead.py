"""The driver's own cost: per-trial overhead against training time, and rank/export on 1,000 trials.

1. Real 20-epoch trials of the reference model through the real driver (SQLite, TPE queue):
   overhead = the trial's wall time in `run_trials` minus the seconds `train()` itself took
   (forking the trial's process, sampling, storage writes, attrs, the progress lines), plus
   the start of TensorFlow's runtime in the fresh process (inside train()'s seconds, but a cost
   of the fork, timed on its own), plus the per-epoch reporting (trial.report + should_prune on
   SQLite, also inside train()) timed on its own; all against the trial's train() seconds.
   The trials keep their models as a search does (the best 3, search/kept.py): the loop's upload
   and pruning are in the driver's seconds; saving the `.keras` file is inside train() and timed
   on its own, as is the loop's keeping of one model in the worst case (every trial among the best,
   so every trial uploads one and deletes one).
2. A study of 1,000 trials made quickly (trivial objective, realistic attrs: a 20-epoch history
   and a full config per trial), then `search rank` and `search export` as a user runs them.

    python bench/overhead.py --trials 3 --epochs 20
    python bench/overhead.py --trials 2 --epochs 2      # a short check that it runs (a few minutes)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search._keras import share_gpus, tf
from search.artifacts import settle_keeping
from search.config import TrialConfig
from search.data import load_mnist
from search.forked import Forked
from search.kept import KeptModels
from search.model import build_model
from search.objective import Objective
from search.progress import Progress
from search.study import StudySpec, open_search
from search.trials import run_trials
from spaces import params_for

REPO = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD = 0.01
TARGET_SECONDS = 2.0


def trial_overhead(n_trials: int, epochs: int, folder: Path, keep: int) -> tuple[list[float], list[float]]:
    """(driver seconds outside train(), train() seconds) for each of `n_trials` real trials.

    Each trial goes through `run_trials` as in `search run`: its process forked, sampled,
    trained, recorded, reported, its model kept while among the best `keep`.
    """
    spec = StudySpec(space="size", backend="tpe", pruner="none", epochs=epochs, baseline=False)
    search = open_search(spec, f"sqlite:///{folder}/overhead.db", "overhead", seed=0, keep_models=keep)
    study, backend = search.study, search.backend
    for _ in range(n_trials):  # the same model every time, so trials are alike
        study.enqueue_trial(params_for("size", spec.base()))
    progress = Progress(n_trials, spec.objective)
    objective = Objective(spec, load_mnist(), progress, KeptModels.of(search.keeping))
    outside, inside = [], []
    for done in range(1, n_trials + 1):
        start = time.perf_counter()
        run_trials(study, backend, objective, done)
        wall = time.perf_counter() - start
        trial = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))[-1]
        inside.append(trial.user_attrs["seconds"])
        outside.append(wall - inside[-1])
    return outside, inside


def runtime_start_seconds() -> float:
    """Median seconds a freshly forked process takes to start TensorFlow's runtime (its first op)."""

    def first_op() -> float:
        start = time.perf_counter()
        share_gpus()
        float(tf.reduce_sum(tf.ones((2, 2))))
        return time.perf_counter() - start

    return statistics.median(Forked(first_op).result() for _ in range(5))


def model_save_seconds(folder: Path) -> tuple[float, int]:
    """Median seconds a trial's process takes to save the reference model as `.keras` (optimizer state
    included, as after training), and the file's bytes. Inside train()'s seconds, so timed on its own."""

    def save() -> tuple[float, int]:
        model = build_model(TrialConfig())
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.optimizer.build(model.trainable_variables)
        times = []
        for k in range(5):
            start = time.perf_counter()
            model.save(folder / f"saved-{k}.keras")
            times.append(time.perf_counter() - start)
        return statistics.median(times), (folder / "saved-0.keras").stat().st_size

    return Forked(save).result()  # a process of its own: this one forks trials afterwards


def keep_seconds(folder: Path, size: int, keep: int = 3) -> float:
    """Median seconds the loop spends keeping one trial's model of `size` bytes, in the worst case:
    every trial better than the last, so each one is ranked, uploaded, and pushes one out (deleted)."""
    url = f"sqlite:///{folder}/keep.db"
    study = optuna.create_study(study_name="keep", storage=url, direction="maximize")  # no heartbeat: no trial runs
    models = KeptModels.of(settle_keeping(url, study, keep=keep, root=None))
    times = []
    for number in range(keep + 8):
        trial = study.ask()
        models.scratch_path(trial.number).write_bytes(os.urandom(size))
        value = 0.9 + number / 1000
        start = time.perf_counter()
        models.trial_ended(study, trial, TrialState.COMPLETE, value)
        uploaded = time.perf_counter()
        study.tell(trial, value)  # the loop's own tell, not the keeping's: not timed
        told = time.perf_counter()
        models.prune(study)
        times.append(uploaded - start + time.perf_counter() - told)
    return statistics.median(times[keep:])  # once the best are full, each trial deletes one


def report_seconds(folder: Path, epochs: int) -> float:
    """Seconds one epoch's trial.report + should_prune costs on SQLite, as the reporter callback does it."""
    study = optuna.create_study(storage=f"sqlite:///{folder}/report.db", pruner=optuna.pruners.HyperbandPruner())
    for _ in range(5):
        study.optimize(lambda t: _report_all(t, epochs), n_trials=1)
    trial = study.ask()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        trial.report(0.9, step=epoch)
        trial.should_prune()
    return (time.perf_counter() - start) / epochs


def _report_all(trial: optuna.Trial, epochs: int) -> float:
    for epoch in range(1, epochs + 1):
        trial.report(random.random(), step=epoch)
    return random.random()


def thousand_trials(url: str) -> None:
    """A study shaped like a real one (params, per-epoch values, config, history), 1,000 trials."""
    spec = StudySpec(space="size", backend="random", pruner="none", epochs=20, baseline=False)
    study = open_search(spec, url, "big", seed=0).study
    distribution = optuna.distributions.IntDistribution(1, 8)
    trials = []
    for number in range(1000):
        curve = sorted(random.uniform(0.9, 0.99) for _ in range(20))
        history = {k: [random.random() for _ in range(20)] for k in ("loss", "accuracy", "val_loss", "learning_rate")}
        attrs = {
            "config": TrialConfig(epochs=20, seed=number).to_dict(),
            "history": {**history, "val_accuracy": curve},
            "param_count": 912226,
            "epochs_run": 20,
            "best_epoch": 20,
            "seconds": 60.0,
            "first_epoch": 1,
        }
        trials.append(
            optuna.trial.create_trial(
                params={"n_layers": 7},
                distributions={"n_layers": distribution},
                value=curve[-1],
                intermediate_values=dict(enumerate(curve, start=1)),
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)


def cli_seconds(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search", *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--keep-models", type=int, default=3, help="models the study keeps (search run's default)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        runtime = runtime_start_seconds()  # before anything here runs TensorFlow: forks are safe
        save, size = model_save_seconds(folder)
        outside, inside = trial_overhead(args.trials, args.epochs, folder, args.keep_models)
        per_epoch = report_seconds(folder, args.epochs)
        keeping = keep_seconds(folder, size)
        driver, training = statistics.median(outside), statistics.median(inside)
        saved = save if args.keep_models else 0.0
        share = (driver + runtime + args.epochs * per_epoch + saved) / training
        print(
            f"driver outside train(): median {driver * 1000:.0f} ms per trial (each: "
            f"{', '.join(f'{o * 1000:.0f}' for o in outside)} ms; --keep-models {args.keep_models}); runtime start "
            f"in the trial's process {runtime * 1000:.0f} ms; per-epoch report {per_epoch * 1000:.1f} ms; "
            f"saving the model {saved * 1000:.0f} ms; a {args.epochs}-epoch trial of the reference model trains "
            f"{training:.0f} s -> overhead {share:.2%} (target < {TARGET_OVERHEAD:.0%})"
        )
        print(
            f"keeping models: the trial's process saves the reference model's .keras ({size / 1e6:.1f} MB) in "
            f"{save * 1000:.0f} ms; the loop ranks, uploads it and deletes the one it pushes out in "
            f"{keeping * 1000:.0f} ms (worst case: every trial among the best) -> "
            f"{(save + keeping) / training:.2%} of the {args.epochs}-epoch trial"
        )
        url = f"sqlite:///{folder}/big.db"
        start = time.perf_counter()
        thousand_trials(url)
        print(f"made a 1,000-trial study in {time.perf_counter() - start:.1f} s")
        rank = cli_seconds("rank", "--storage", url)
        export = cli_seconds("export", "--study", "big", "--storage", url, "--out", str(folder / "best.yaml"))
        print(
            f"`search rank` on 1,000 trials: {rank:.2f} s; `search export`: {export:.2f} s "
            f"(whole commands, Python start-up included; target < {TARGET_SECONDS:.0f} s each)"
        )


if __name__ == "__main__":
    main()
