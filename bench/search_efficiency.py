"""Search efficiency: what each backend finds in the same wall-clock budget on the same space.

Each backend runs the real product, one after another (never side by side: the CPU is shared),
as `python -m search run --space S --backend B --pruner P --timeout BUDGET --trials 100000
--seed K --no-baseline --no-prior` into one SQLite file under --out: algorithms, not hand-picked
starts (neither the reference model nor the space's best known config is queued for anyone).
Every Optuna backend runs with the product's default pruner and epoch cap, so that what differs
is the sampler: random search trained every trial to a 100-epoch cap would finish one or two
trials in the budget, a straw man. Keras Tuner's Hyperband has its own schedule up to the same
cap. Keras Tuner's Bayesian oracle cannot be pruned: it trains every trial for `PLAIN_EPOCHS`
(the product's cap before issue 15, where it ran before), not the 100 that would leave it one trial.
Exactly BUDGET minutes after launch (Python and TensorFlow start-up included) the run gets
SIGINT: the trial then running is recorded as failed and counts for nothing, since it did not
finish within the budget. Figures come from the storage afterwards:

- best validation accuracy: the highest per-epoch validation accuracy of any trial that finished
  (complete or pruned) within the budget; a complete trial's value is that number;
- time to 98.0% / 98.8%: from launch to the end of the first epoch that reached it, and which
  trial did; a run that never reaches it counts as the whole budget in the medians. 98.8% is
  issue 15's; 98.0% (the reference model's level) only shows how soon a search finds any
  sound network;
  Optuna keeps no per-epoch timestamps, so epoch k of a trial that trained n epochs is placed at
  start + (complete - start) * k / n of that trial; the first epoch also compiles, so this can
  be early by a few seconds;
- trials complete, pruned, cut or failed (started, not finished in time) and epochs trained
  (every reported epoch, the cut trial's too).

Per backend: the median and the range (min-max) over seeds of the best validation accuracy, and
the median time to 98.8%; then every run. `--full` is issue 15's comparison: 10 minutes x 4
backends x seeds 0 1 2 (2 hours). The default (one seed) takes budget x backends.
Each run's launch time goes to `runs.json` beside the storage, so a comparison run in parts (some
backends now, others later, each into its own --out) is reported as one with `--report-from`.
Run: .venv/bin/python bench/search_efficiency.py [--full]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from run_all import BENCHMARKS, REPO, machine, section, write_section

from search.backends import BACKENDS
from search.cli import _parser
from search.progress import format_seconds
from search.spec import DEFAULT_PRUNER
from search.storage import open_storage
from spaces import SPACES

DEFAULTS = _parser().parse_args(["run"])  # the product's own defaults: backend, space, epochs
COMPARED = (DEFAULTS.backend, "random", "kt-hyperband", "kt-bayesian")
TARGETS = (0.980, 0.988)
GOAL_RATIO = 0.5  # issue 15: the default's median time to 98.8% at most half of random search's
FULL = {"budget": 10.0, "seeds": [0, 1, 2], "backends": list(COMPARED), "subset": 0}
PLAIN = {**FULL, "seeds": [0]}  # without --full: one seed
PLAIN_EPOCHS = 20  # epochs per trial for a backend that cannot prune
STOP_TRIES, STOP_WAIT_SECONDS = 6, 10  # SIGINT this often, this far apart; then SIGKILL
# The comparison (10 minutes or more, all images) owns the main section; shorter ones
# (`make bench`'s) write their own, so a quick rerun never replaces the figures the targets are judged on.
SECTION = ("search_efficiency", "Search efficiency")
SHORT_SECTION = ("search_efficiency_short", "Search efficiency, short budget")


@dataclass
class Figures:
    """What one backend did with one seed within the budget."""

    backend: str
    seed: int
    best: float | None = None
    reached: dict[float, tuple[float, int] | None] = field(default_factory=dict)  # target -> (seconds, trial)
    complete: int = 0
    pruned: int = 0
    cut: int = 0  # started but not finished within the budget: failed, or cut at the deadline
    epochs: int = 0
    launched: datetime.datetime | None = None


def settings_for(backend: str, cap: int) -> tuple[str, int]:
    """The pruner and the epochs per trial a backend runs with (see the docstring)."""
    if not backend.startswith("kt-"):  # Optuna's samplers
        return DEFAULT_PRUNER, cap
    if backend == "kt-hyperband":
        return "none", cap  # its brackets are its pruning
    return "none", min(cap, PLAIN_EPOCHS)


def run_backend(backend: str, seed: int, args: argparse.Namespace, folder: Path) -> tuple[datetime.datetime, str]:
    """Run one search for exactly the budget; its launch time and study name."""
    study = f"{backend}-seed{seed}"
    pruner, epochs = settings_for(backend, args.epochs)
    command = [
        *(sys.executable, "-m", "search", "run", "--space", args.space, "--backend", backend),
        *("--pruner", pruner, "--timeout", str(args.budget), "--trials", "100000"),
        *("--epochs", str(epochs), "--study", study, "--seed", str(seed)),
        *("--storage", f"sqlite:///{folder / 'efficiency.db'}", "--subset", str(args.subset)),
        *("--no-baseline", "--no-prior"),
    ]
    with open(folder / f"{study}.log", "w") as log:
        launched = datetime.datetime.now()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = process.wait(timeout=args.budget * 60)
        except subprocess.TimeoutExpired:
            stop(process)
            return launched, study
    if status:  # it ended by itself before the deadline, and not well
        tail = (folder / f"{study}.log").read_text().strip().splitlines()[-1:]
        raise SystemExit(f"{backend} seed {seed} failed (status {status}): {' '.join(tail)}")
    return launched, study


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user would; repeated, since one that lands in TensorFlow's clean-up is swallowed."""
    for _ in range(STOP_TRIES):
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_WAIT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()  # its running trial stays RUNNING in the storage: it counts for nothing either way
    process.wait()


def figures(trials: list[FrozenTrial], backend: str, seed: int, launched: datetime.datetime, budget: float) -> Figures:
    """The figures of one run from its stored trials; only what finished by launch + budget counts."""
    deadline = launched + datetime.timedelta(minutes=budget)
    result = Figures(backend, seed, reached=dict.fromkeys(TARGETS))
    for trial in trials:
        result.epochs += len(trial.intermediate_values)
        done = trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and trial.datetime_complete <= deadline
        if not done:
            result.cut += trial.datetime_start is not None  # started, but did not finish within the budget
            continue
        result.complete += trial.state == TrialState.COMPLETE
        result.pruned += trial.state == TrialState.PRUNED
        for seconds, accuracy in epoch_times(trial, launched):
            result.best = max(result.best or 0.0, accuracy)
            for target in TARGETS:
                if accuracy >= target and (result.reached[target] is None or seconds < result.reached[target][0]):
                    result.reached[target] = (seconds, trial.number)
    return result


def epoch_times(trial: FrozenTrial, launched: datetime.datetime) -> list[tuple[float, float]]:
    """(seconds after launch, validation accuracy) at the end of each epoch the trial trained."""
    curve = trial.user_attrs.get("history", {}).get("val_accuracy", [])
    start = (trial.datetime_start - launched).total_seconds()
    span = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return [(start + span * k / len(curve), value) for k, value in enumerate(curve, start=1)]


def reach_seconds(result: Figures, target: float, budget: float) -> float:
    """Seconds to the target; a run that never reached it counts as the whole budget."""
    reached = result.reached[target]
    return budget * 60 if reached is None else reached[0]


def run_row(result: Figures) -> list[str]:
    times = [f"{format_seconds(r[0])} (trial {r[1]})" if r else "not reached" for r in result.reached.values()]
    best = f"{result.best:.2%}" if result.best is not None else "-"
    return [best, *times, str(result.complete), str(result.pruned), str(result.cut), str(result.epochs)]


def median_row(runs: list[Figures], budget: float) -> list[str]:
    bests = [r.best for r in runs if r.best is not None]
    times = []
    for target in TARGETS:
        seconds = statistics.median(reach_seconds(r, target, budget) for r in runs)
        unreached = sum(r.reached[target] is None for r in runs)
        note = "" if not unreached else f" ({unreached} of {len(runs)} runs not reached: the budget counted)"
        times.append("not reached" if unreached == len(runs) else format_seconds(seconds) + note)
    counts = [statistics.median(getattr(r, name) for r in runs) for name in ("complete", "pruned", "cut", "epochs")]
    best = f"{statistics.median(bests):.2%} ({min(bests):.2%}-{max(bests):.2%})" if bests else "-"
    return [best, *times, *(f"{c:g}" for c in counts)]


def table(first: list[str], rows: list[list[str]], spread: bool = False) -> str:
    targets = [f"time to {t:.1%}" for t in TARGETS]
    best = "best val acc, median (min-max)" if spread else "best val acc"
    head = [*first, best, *targets, "complete", "pruned", "cut or failed", "epochs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def verdict(runs: list[Figures], budget: float) -> list[str]:
    """Lines saying whether issue 15's targets were met: best accuracy above every other backend's, and speed."""
    default = [r for r in runs if r.backend == DEFAULTS.backend]
    others = sorted({r.backend for r in runs} - {DEFAULTS.backend})
    if not default or not others:
        return [f"Targets: not judged (they need `{DEFAULTS.backend}` and at least one other backend)."]
    target = TARGETS[-1]

    def best(backend: str) -> float:
        return statistics.median(r.best or 0.0 for r in runs if r.backend == backend)

    def reach(backend: str) -> float:
        return statistics.median(reach_seconds(r, target, budget) for r in runs if r.backend == backend)

    beaten = [b for b in others if best(DEFAULTS.backend) <= best(b)]
    lines = [
        f"- `{DEFAULTS.backend}` median best validation accuracy {best(DEFAULTS.backend):.2%}, above every other "
        "backend's median: " + ("met" if not beaten else f"missed (not above {', '.join(beaten)})") + "."
    ]
    if "random" in others:
        ratio = reach(DEFAULTS.backend) / reach("random")
        lines.append(
            f"- `{DEFAULTS.backend}` median time to {target:.1%}: {format_seconds(reach(DEFAULTS.backend))}; "
            f"`random`: {format_seconds(reach('random'))} (the budget is {format_seconds(budget * 60)}); ratio "
            f"{ratio:.2f} (target <= {GOAL_RATIO}: " + ("met" if ratio <= GOAL_RATIO else "missed") + "). A run that "
            f"never reached {target:.1%} counts as the whole budget, so where random never reached it the ratio is "
            "an upper bound."
        )
    return lines


def report(runs: list[Figures], args: argparse.Namespace) -> str:
    """The Markdown body: setup, medians per backend, every run, targets."""
    data = f"the first {args.subset} training images" if args.subset else "all 50,000 training images"
    backends = list(dict.fromkeys(r.backend for r in runs))
    medians = [
        [b, *map(str, settings_for(b, args.epochs)), *median_row([r for r in runs if r.backend == b], args.budget)]
        for b in backends
    ]
    each = [[r.backend, str(r.seed), *run_row(r)] for r in runs]
    return "\n\n".join(
        [
            f"Space `{args.space}`, {args.budget:g} minutes per backend and seed (from launch, start-up included), "
            "epochs per trial as in the table, no baseline or prior trial, "
            f"{data}, validation on the 10,000 held-out images; seeds "
            f"{' '.join(map(str, args.seeds))}; backends one after another.",
            "Medians over seeds:",
            table(["backend", "pruner", "epochs"], medians, spread=True),
            "Each run:",
            table(["backend", "seed"], each),
            "Targets (issue 15, judged on 3 seeds or more at 10 minutes or more on all images):\n"
            + "\n".join(verdict(runs, args.budget)),
        ]
    )


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, help=f"minutes per backend and seed (default: {PLAIN['budget']:g})")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds; each repeats every backend (default: 0)")
    parser.add_argument("--space", default=DEFAULTS.space, choices=list(SPACES), help="default: %(default)s")
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), help=f"default: {' '.join(COMPARED)}")
    parser.add_argument("--subset", type=int, help="train on the first N training images (smoke tests; default all)")
    parser.add_argument(
        "--epochs", type=int, default=DEFAULTS.epochs, help="max epochs per trial (default: %(default)s)"
    )
    full = f"{FULL['budget']:g} minutes x {' '.join(COMPARED)} x seeds {' '.join(map(str, FULL['seeds']))}"
    parser.add_argument("--full", action="store_true", help=f"issue 15's comparison: {full} (2 hours)")
    parser.add_argument("--out", type=Path, help="empty or new folder for the storage and logs (default: a temp dir)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="file whose section is rewritten")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave the file alone")
    parser.add_argument(
        "--report-from", type=Path, nargs="+", metavar="OUT", help="run nothing; report the runs in these --out folders"
    )
    args = parser.parse_args(argv)
    if (args.budget is not None and args.budget <= 0) or args.epochs < 1:
        parser.error("--budget and --epochs must be above 0")
    chosen = [name for name in FULL if getattr(args, name) is not None]
    if args.full and chosen:
        parser.error(f"--full fixes {', '.join(FULL)}; leave out --{' --'.join(chosen)}")
    for name, value in (FULL if args.full else PLAIN).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.report_from:
        return args
    if args.out and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty; pick a new folder (studies there would be resumed)")
    return args


RUNS_FILE = "runs.json"  # in each --out folder: the settings, and each run's study and launch time


def run_all(args: argparse.Namespace) -> list[Figures]:
    folder = args.out or Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"storage and logs: {folder}", file=sys.stderr)
    settings = {name: getattr(args, name) for name in ("budget", "space", "subset", "epochs")}
    done: list[dict] = []
    for seed in args.seeds:
        for backend in args.backends:
            print(f"running {backend} (seed {seed}) for {args.budget:g} minutes", file=sys.stderr, flush=True)
            launched, study = run_backend(backend, seed, args, folder)
            done.append({"backend": backend, "seed": seed, "study": study, "launched": launched.isoformat()})
            (folder / RUNS_FILE).write_text(json.dumps({"settings": settings, "runs": done}, indent=1))
    return stored_runs([folder], args)


def stored_runs(folders: list[Path], args: argparse.Namespace) -> list[Figures]:
    """The figures of every run these folders hold, in the order they ran."""
    runs = []
    for folder in folders:
        saved = json.loads((folder / RUNS_FILE).read_text())
        for name, value in saved["settings"].items():
            if getattr(args, name) != value:
                raise SystemExit(f"{folder} ran with {name} {value}, not {getattr(args, name)}: not comparable")
        storage = open_storage(f"sqlite:///{folder / 'efficiency.db'}")
        made = set(optuna.get_all_study_names(storage))
        for run in saved["runs"]:
            # A run stopped before its study was made (a slow start on a busy machine) did nothing.
            trials = optuna.load_study(study_name=run["study"], storage=storage).trials if run["study"] in made else []
            launched = datetime.datetime.fromisoformat(run["launched"])
            runs.append(figures(trials, run["backend"], run["seed"], launched, args.budget))
            runs[-1].launched = launched
        # Held connections made the next open_storage() here fail ("database disk image is malformed").
        storage.engine.dispose()
    args.seeds = sorted({r.seed for r in runs})
    order = {name: k for k, name in enumerate(COMPARED)}
    return sorted(runs, key=lambda r: (r.seed, order.get(r.backend, len(order))))


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_before, started = os.getloadavg()[0], time.monotonic()
    runs = stored_runs(args.report_from, args) if args.report_from else run_all(args)
    body = report(runs, args)
    print(body)
    if not args.no_write:
        command = " ".join([".venv/bin/python", "bench/search_efficiency.py", *(argv or sys.argv[1:])])
        minutes = (time.monotonic() - started) / 60
        judged = args.budget >= FULL["budget"] and not args.subset and len(args.seeds) >= len(FULL["seeds"])
        name = SECTION if judged else SHORT_SECTION
        if args.report_from:  # the runs were made earlier: say when, not this process's load
            launches = [r.launched for r in runs]
            text = (
                f"Runs launched {min(launches):%Y-%m-%d %H:%M} to {max(launches):%H:%M} on {machine()}, "
                f"reported from their storage by:\n\n```\n{command}\n```\n\n{body.strip()}\n"
            )
        else:
            text = section(command, body, load_before, minutes)
        write_section(args.benchmarks, *name, text)


if __name__ == "__main__":
    main()
