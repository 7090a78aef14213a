"""Resident memory over consecutive trials in one process: does the driver leak from trial to trial?

Runs N trials of a space through the real driver (Objective + Optuna storage) in this process
and reads VmRSS after each. Target: growth under 100 MB after the second trial.

    python bench/memory.py --trials 20 --space size --subset 10000 --epochs 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna

from search.backends import get_backend
from search.data import load_mnist
from search.objective import Objective
from search.progress import Progress
from search.storage import open_storage
from search.study import StudySpec, open_study

TARGET_MB = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(space: str, n_trials: int, subset: int, epochs: int) -> list[float]:
    """RSS in MB after each of `n_trials` trials."""
    spec = StudySpec(space=space, backend="random", pruner="none", epochs=epochs, subset=subset, baseline=False)
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/memory.db")
        backend = get_backend("random")(seed=0, pruner="none", epochs=epochs, study="memory")
        study = open_study(storage, "memory", spec, backend)
        objective = Objective(spec, load_mnist(), n_trials, Progress(n_trials, spec.objective))
        readings = []
        for _ in range(n_trials):
            study.optimize(objective, n_trials=1, gc_after_trial=True)
            readings.append(rss_mb())
            print(f"trial {len(readings):>2}: {readings[-1]:.0f} MB", flush=True)
    return readings


def report(readings: list[float], args: argparse.Namespace) -> str:
    growth = max(readings[1:]) - readings[1]
    verdict = "met" if growth < TARGET_MB else f"missed by {growth - TARGET_MB:.0f} MB"
    return (
        f"Resident memory over {len(readings)} trials of `{args.space}` (subset {args.subset or 'all'}, "
        f"{args.epochs} epoch(s) each) in one process: after trial 1 {readings[0]:.0f} MB, after trial 2 "
        f"{readings[1]:.0f} MB, last {readings[-1]:.0f} MB, peak {max(readings):.0f} MB; growth after the "
        f"second trial {growth:.0f} MB (target < {TARGET_MB} MB: {verdict}).\n"
        f"Per trial (MB): {', '.join(f'{r:.0f}' for r in readings)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--space", default="size")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(report(measure(args.space, args.trials, args.subset, args.epochs), args))


if __name__ == "__main__":
    main()
