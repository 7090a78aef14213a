"""The technique comparison on MNIST and Fashion-MNIST: each space searched for the same budget on each.

`make compare`'s studies, made the same way for every dataset: per dataset and space, one
`python -m search run --space S --dataset D --trials T --epochs E --subset N --seed K
--pruner none --no-prior` into one SQLite file under --out, one after another (never side by
side: the CPU is shared). Each run starts with its reference-model trial (the baseline the comparison measures
gain against) and gets SIGINT exactly BUDGET minutes after launch, as bench/search_efficiency.py
does (the trial then running counts for nothing), unless it has finished its T trials (by
default, more than any budget holds) before. `--no-prior` on every run: the warm-start
prior exists for MNIST only, and the comparison is of what each space's search finds, not of a
config queued by hand. `--pruner none` by default: the comparison reads complete trials, and
in a budget of minutes the default `asha` completes almost none (it pauses every trial at its
first rung and promotes few of them to the study's last epoch; a first run at 3 minutes a study
completed only each study's baseline). The data is fetched and checked before the first clock starts.

Then `search report --compare --dataset D` over that file, per dataset: its Markdown table
(best validation accuracy per space against the reference model, the loss gap, the smallest
trial within 0.1 point of the best, seconds) is what this prints, and, unless --no-write, the
section of BENCHMARKS.md. `--smoke` runs a few seconds per study on 500 images and writes nothing.
Run: .venv/bin/python bench/techniques.py [--budget 3] [--datasets mnist fashion-mnist]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from run_all import REPO, add_budget_flags, out_folder, section, settle_budget_flags, write_section
from search_efficiency import stop

from search.report.compare import write_comparison
from spaces import SPACES

DATASETS = ("mnist", "fashion-mnist")
SMOKE = {"budget": 0.3, "subset": 500, "epochs": 2}
DEFAULT = {"budget": 3.0, "subset": 10000, "epochs": 10}
SECTION = ("techniques", "What each technique bought, on MNIST and on Fashion-MNIST")


def run_study(dataset: str, space: str, args: argparse.Namespace, folder: Path) -> None:
    """One space's study of one dataset, stopped at the budget; its log beside the storage."""
    study = f"{dataset}-{space}"
    command = [
        *(sys.executable, "-m", "search", "run", "--space", space, "--dataset", dataset, "--study", study),
        *("--storage", storage_of(folder), "--trials", str(args.trials), "--epochs", str(args.epochs)),
        *("--subset", str(args.subset), "--seed", str(args.seed), "--pruner", args.pruner, "--no-prior"),
    ]
    with open(folder / f"{study}.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=args.budget * 60)
        except subprocess.TimeoutExpired:
            stop(process)


def storage_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'techniques.db'}"


def report(args: argparse.Namespace, folder: Path) -> str:
    """The Markdown body: the set-up, then each dataset's comparison table."""
    data = f"the first {args.subset} training images" if args.subset else "all 50,000 training images"
    parts = [
        f"Each of the spaces {', '.join(args.spaces)} searched for {args.budget:g} minutes (from launch) per dataset, "
        f"backend tpe, pruner `{args.pruner}`, seed {args.seed}, {args.epochs} epochs per trial, "
        f"{data}, validation on the held-out 10,000, `--no-prior`. Gain is over each study's own "
        "reference-model trial (the note's 784-1024-512-256-10 net, trained the same way)."
    ]
    for dataset in args.datasets:
        table, page = write_comparison(storage_of(folder), dataset, folder / dataset, note=lambda _: None)
        parts += [f"**{dataset}** (`{page.relative_to(folder)}` beside the storage):", table]
    return "\n\n".join(parts)


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, help=f"minutes per study (default: {DEFAULT['budget']:g})")
    parser.add_argument("--subset", type=int, help=f"train on the first N images (default: {DEFAULT['subset']})")
    parser.add_argument("--epochs", type=int, help=f"max epochs per trial (default: {DEFAULT['epochs']})")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--trials", type=int, default=100_000, help="trials per study, baseline included")
    parser.add_argument("--pruner", default="none", help="default: %(default)s (the comparison reads complete trials)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="default: %(default)s")
    parser.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES), help="default: all")
    add_budget_flags(parser, "the storage and logs")
    args = parser.parse_args(argv)
    settle_budget_flags(parser, args, SMOKE, DEFAULT)
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = out_folder(args, "search-techniques-")
    for dataset in args.datasets:  # fetched and verified now, so no study's clock pays for it
        subprocess.run([sys.executable, "-m", "search", "data", "--dataset", dataset], cwd=REPO, check=True)
    load_before, started = os.getloadavg()[0], time.monotonic()
    for dataset in args.datasets:
        for space in args.spaces:
            now = datetime.datetime.now().strftime("%H:%M")
            print(f"{now} searching {space} on {dataset} for {args.budget:g} minutes", file=sys.stderr, flush=True)
            run_study(dataset, space, args, folder)
    body = report(args, folder)
    print(body)
    if not (args.no_write or args.smoke):
        command = " ".join([".venv/bin/python", "bench/techniques.py", *(argv or sys.argv[1:])])
        write_section(args.benchmarks, *SECTION, section(command, body, load_before, (time.monotonic() - started) / 60))


if __name__ == "__main__":
    main()
