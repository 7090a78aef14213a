"""Resident memory over consecutive trials: does a long search grow from trial to trial?

Runs N trials of a space through the real driver (Objective + Optuna storage), twice, side by side:
1. as `search run` does: each trial in a process forked for it (search/forked.py); read after each
   trial: the driver's VmRSS and the largest trial process so far (ru_maxrss of children);
2. every trial in this one process (study.optimize, then release_memory), the way the driver
   worked before: VmRSS.
Target: growth under 100 MB after the second trial.

    python bench/memory.py --trials 20 --space size --subset 10000 --epochs 1
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import optuna

from search.data import load_mnist
from search.objective import Objective
from search.progress import Progress
from search.study import StudySpec, open_search
from search.trials import run_trials

TARGET_MB = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def largest_child_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class _InProcess(Objective):
    """The same trials, each trained in this process (then Keras's `clear_session`), as before forking."""

    def can_fork(self) -> bool:
        return False


def measure(space: str, n_trials: int, subset: int, epochs: int, forked: bool) -> dict[str, list[float]]:
    """MB after each of `n_trials` trials: the driver's RSS, and (forked) the largest trial process so far."""
    spec = StudySpec(space=space, backend="random", pruner="none", epochs=epochs, subset=subset, baseline=False)
    with tempfile.TemporaryDirectory() as folder:
        search = open_search(spec, f"sqlite:///{folder}/memory.db", "memory", seed=0)
        study, backend = search.study, search.backend
        runner = Objective if forked else _InProcess
        objective = runner(spec, load_mnist(), Progress(n_trials, spec.objective))
        readings: dict[str, list[float]] = {"driver": [], "trial process": []}
        for k in range(1, n_trials + 1):
            run_trials(study, backend, objective, k)
            readings["driver"].append(rss_mb())
            if forked:
                readings["trial process"].append(largest_child_mb())
    return {name: values for name, values in readings.items() if values}


def growth(values: list[float]) -> float:
    """How far the readings rose above the one after the second trial."""
    return max(values[1:]) - values[1]


def report(forked: dict[str, list[float]], in_process: list[float], args: argparse.Namespace) -> str:
    lines = [
        f"Resident memory over {args.trials} trials of `{args.space}` (subset {args.subset or 'all'}, "
        f"{args.epochs} epoch(s) each), the two ways side by side in one run:"
    ]
    for name, values in [*(("forked: " + k, v) for k, v in forked.items()), ("one process", in_process)]:
        verdict = "met" if growth(values) < TARGET_MB else f"missed by {growth(values) - TARGET_MB:.0f} MB"
        lines.append(
            f"- {name}: after trial 1 {values[0]:.0f} MB, after trial 2 {values[1]:.0f} MB, last "
            f"{values[-1]:.0f} MB; growth after the second trial {growth(values):.0f} MB "
            f"(target < {TARGET_MB} MB: {verdict}). Per trial: {', '.join(f'{v:.0f}' for v in values)}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--space", default="size")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    forked = measure(args.space, args.trials, args.subset, args.epochs, forked=True)
    in_process = measure(args.space, args.trials, args.subset, args.epochs, forked=False)["driver"]
    print(report(forked, in_process, args))


if __name__ == "__main__":
    main()
