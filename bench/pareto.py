"""Accuracy against size: the size-aware pruner against no pruning, in the same wall-clock budget.

Each arm runs the real product, one after another (never side by side: the CPU is shared), as
`python -m search run --space S --objective val_accuracy,params --pruner P --timeout BUDGET
--trials 100000 --epochs E --seed K --no-baseline --no-prior` into one SQLite file under --out.
Both arms have the same sampler (TPE), epoch cap and seeds; what differs is the pruner. Exactly
BUDGET minutes after launch (start-up included) the run gets SIGINT, as bench/search_efficiency.py
does: the trial then running counts for nothing. Figures come from the storage afterwards, over
the trials complete by the deadline (a pruned trial is not on a front: it has no final values):

- trials complete and pruned by the deadline;
- the front: the complete trials no other complete trial beats on both accuracy and parameters;
- its hypervolume: the area the front dominates in (validation error, log10 trainable parameters),
  both minimized, up to the reference point (error 10%, 10^8 parameters): every sound network
  of the spaces lies inside it (the size space's largest, 8 x 2048, has 30 million), and a
  factor of ten in size counts alike at any size, as on the report's log axis. Larger is better.

Per arm: the median and range over seeds of the hypervolume and the counts; then every run.
Target (issue 16): the pruned arm's median hypervolume larger. `--smoke` runs a few seconds
per arm on 500 images and writes nothing: it checks the script, not the pruner.
Run: .venv/bin/python bench/pareto.py [--seeds 0 1 2] [--budget 10]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from run_all import REPO, add_budget_flags, out_folder, section, settle_budget_flags, write_section
from search_efficiency import stop

from search.spec import DEFAULT_MULTI_PRUNER

ARMS = (DEFAULT_MULTI_PRUNER, "none")
OBJECTIVE = "val_accuracy,params"
REFERENCE = (0.10, 8.0)  # (validation error, log10 trainable parameters): the hypervolume's far corner
SMOKE = {"budget": 0.05, "seeds": [0], "subset": 500, "epochs": 3}
DEFAULT = {"budget": 10.0, "seeds": [0, 1, 2], "subset": 0, "epochs": 20}
SECTION = ("pareto", "Accuracy against size: pruned or not")


@dataclass
class Run:
    """What one arm did with one seed within the budget."""

    arm: str
    seed: int
    complete: int
    pruned: int
    front: list[tuple[float, float]]  # (accuracy, trainable parameters) of each Pareto-optimal trial
    hypervolume: float


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float] = REFERENCE) -> float:
    """The area `points` (accuracy, parameters) dominate in (error, log10 parameters), up to `reference`.

    Swept by error, lowest first: each point adds the strip from its error to the next point's,
    as high as the smallest size seen so far leaves below the reference.
    """
    inside = sorted(
        (1 - accuracy, math.log10(params))
        for accuracy, params in points
        if 1 - accuracy < reference[0] and math.log10(params) < reference[1]
    )
    area, smallest = 0.0, reference[1]
    edges = [error for error, _ in inside[1:]] + [reference[0]] * bool(inside)
    for (error, size), edge in zip(inside, edges, strict=True):
        smallest = min(smallest, size)
        area += (edge - error) * (reference[1] - smallest)
    return area


def run_of(trials: list[FrozenTrial], arm: str, seed: int, deadline: datetime.datetime) -> Run:
    """The figures of one run from its stored trials; only what finished by the deadline counts."""
    done = [t for t in trials if t.datetime_complete is not None and t.datetime_complete <= deadline]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    points = [(t.values[0], t.values[1]) for t in complete]
    front = sorted(p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points))
    pruned = sum(t.state == TrialState.PRUNED for t in done)
    return Run(arm, seed, len(complete), pruned, front, hypervolume(points))


def run_arm(arm: str, seed: int, args: argparse.Namespace, folder: Path) -> Run:
    """Run one search for exactly the budget, then read its figures."""
    study, storage = f"{arm}-seed{seed}", f"sqlite:///{folder / 'pareto.db'}"
    command = [
        *(sys.executable, "-m", "search", "run", "--space", args.space, "--objective", OBJECTIVE),
        *("--pruner", arm, "--timeout", str(args.budget), "--trials", "100000", "--epochs", str(args.epochs)),
        *("--study", study, "--seed", str(seed), "--storage", storage, "--subset", str(args.subset)),
        *("--no-baseline", "--no-prior"),
    ]
    with open(folder / f"{study}.log", "w") as log:
        launched = datetime.datetime.now()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=args.budget * 60)
        except subprocess.TimeoutExpired:
            stop(process)
    deadline = launched + datetime.timedelta(minutes=args.budget)
    made = study in optuna.get_all_study_names(storage)  # a run stopped before it made its study did nothing
    trials = optuna.load_study(study_name=study, storage=storage).trials if made else []
    return run_of(trials, arm, seed, deadline)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    """The Markdown body: setup, medians per arm, every run, the target."""
    data = f"the first {args.subset} training images" if args.subset else "all 50,000 training images"

    def spread(values: list[float], fmt: str) -> str:
        return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"

    medians = []
    for arm in ARMS:
        mine = [r for r in runs if r.arm == arm]
        counts = [spread([getattr(r, name) for r in mine], "g") for name in ("complete", "pruned")]
        medians.append(f"| {arm} | {spread([r.hypervolume for r in mine], '.4f')} | {' | '.join(counts)} |")
    each = [
        f"| {r.arm} | {r.seed} | {r.hypervolume:.4f} | {r.complete} | {r.pruned} | "
        + ", ".join(f"{a:.2%} at {p:,.0f}" for a, p in r.front)
        + " |"
        for r in runs
    ]
    pruned, plain = (statistics.median(r.hypervolume for r in runs if r.arm == arm) for arm in ARMS)
    return "\n\n".join(
        [
            f"Space `{args.space}`, objective `{OBJECTIVE}`, backend tpe, {args.budget:g} minutes per arm and seed "
            f"(from launch), up to {args.epochs} epochs per trial, {data}; seeds {' '.join(map(str, args.seeds))}. "
            f"Hypervolume in (validation error, log10 trainable parameters) up to the reference point (error "
            f"{REFERENCE[0]:.0%}, 10^{REFERENCE[1]:g} parameters); larger is better.",
            "| pruner | hypervolume, median (min-max) | complete | pruned |\n|---|---|---|---|\n" + "\n".join(medians),
            "| pruner | seed | hypervolume | complete | pruned | front (accuracy at parameters) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(each),
            f"Target (issue 16): the `{ARMS[0]}` arm's median hypervolume larger than `{ARMS[1]}`'s: "
            + ("met" if pruned > plain else "missed")
            + f" ({pruned:.4f} against {plain:.4f}).",
        ]
    )


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, help=f"minutes per arm and seed (default: {DEFAULT['budget']:g})")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default: {' '.join(map(str, DEFAULT['seeds']))}")
    parser.add_argument("--subset", type=int, help="train on the first N training images (default: all)")
    parser.add_argument("--epochs", type=int, help=f"max epochs per trial (default: {DEFAULT['epochs']})")
    parser.add_argument("--space", default="size", help="default: %(default)s")
    add_budget_flags(parser, "the storage and logs")
    args = parser.parse_args(argv)
    settle_budget_flags(parser, args, SMOKE, DEFAULT)
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = out_folder(args, "search-pareto-")
    load_before, started = os.getloadavg()[0], time.monotonic()
    runs = []
    for seed in args.seeds:
        for arm in ARMS:
            print(f"running pruner {arm} (seed {seed}) for {args.budget:g} minutes", file=sys.stderr, flush=True)
            runs.append(run_arm(arm, seed, args, folder))
    body = report(runs, args)
    print(body)
    if not (args.no_write or args.smoke):
        command = " ".join([".venv/bin/python", "bench/pareto.py", *(argv or sys.argv[1:])])
        write_section(args.benchmarks, *SECTION, section(command, body, load_before, (time.monotonic() - started) / 60))


if __name__ == "__main__":
    main()
