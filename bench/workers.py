"""Trials per hour with 1 and 2 worker processes on this machine, for one fixed workload.

Workload: K configs of the `size` space, drawn once by Optuna's random sampler with a fixed
seed (the same configs for every worker count), queued in a fresh SQLite study and each
trained on the first S training images for E epochs, no pruning, validated on all 10,000.
The workers are `search worker` processes started by `search.workers.run_workers`, exactly as
`search run --workers N` starts them.

Per worker count it reports: wall seconds until every worker has exited (start-up included),
the span from the first trial's start to the last trial's end, trials per hour over that span,
the CPU seconds all workers used (every thread), and the cores they kept busy on average
(CPU seconds / wall seconds). CPU seconds are the steadier figure on a shared machine: other
processes stretch wall time, not the work done.

Run: .venv/bin/python bench/workers.py [--workers 1 2] [--trials 8 --subset 3000 --epochs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from search.storage import HEARTBEAT_SECONDS
from search.study import StudySpec, open_search
from search.workers import run_workers
from spaces import get_space

SPACE = "size"
SEED = 7


def fixed_params(n_trials: int, base_spec: StudySpec) -> list[dict]:
    """The workload: `n_trials` parameter sets of the space, the same on every call."""
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SEED))
    space, base = get_space(SPACE), base_spec.base()
    params = []
    for _ in range(n_trials):
        trial = draw.ask()
        space(trial, base)
        params.append(trial.params)
    return params


def measure(workers: int, params: list[dict], spec: StudySpec, folder: Path) -> dict[str, float]:
    """Run the queued workload with `workers` processes in a fresh study; the figures of that run."""
    url = f"sqlite:///{folder / f'workers-{workers}.db'}"
    study = open_search(spec, url, "bench", seed=SEED).study
    study.set_user_attr("trials", len(params))
    study.set_user_attr("heartbeat", HEARTBEAT_SECONDS)
    for one in params:
        study.enqueue_trial(one)
    cpu_before = _children_cpu_seconds()
    started = time.monotonic()
    with open(folder / f"workers-{workers}.log", "w") as log, contextlib.redirect_stdout(log):
        status = run_workers(study="bench", storage=url, n_trials=len(params), timeout=None, workers=workers)
    wall = time.monotonic() - started
    cpu = _children_cpu_seconds() - cpu_before
    if status:
        raise SystemExit(f"workers failed (status {status}); see {folder / f'workers-{workers}.log'}")
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {
        "workers": workers,
        "trials": len(trials),
        "wall_s": wall,
        "span_s": span,
        "per_hour": 3600 * len(trials) / span,
        "cpu_s": cpu,
        "cores": cpu / wall,
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    spec = StudySpec(
        space=SPACE,
        backend="random",
        pruner="none",
        epochs=args.epochs,
        subset=args.subset,
        baseline=False,  # the workload is the queued configs only
        command=" ".join(sys.argv),
    )
    params = fixed_params(args.trials, spec)
    print(f"workload: {args.trials} {SPACE}-space trials, {args.subset} images, {args.epochs} epochs, no pruning")
    print("| workers | trials | wall s | first start to last end s | trials/hour | worker CPU s | cores busy |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for workers in args.workers:
            row = measure(workers, params, spec, Path(folder))
            print(
                f"| {row['workers']} | {row['trials']} | {row['wall_s']:.0f} | {row['span_s']:.0f} | "
                f"{row['per_hour']:.0f} | {row['cpu_s']:.0f} | {row['cores']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
