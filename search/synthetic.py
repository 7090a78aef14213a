"""A trial that trains nothing: a made-up learning curve in milliseconds, run by the real trial loop.

For measuring the storage under many workers (bench/storage_load.py) and testing the loop's end
state (tests/test_storage_load.py) without TensorFlow: the loop, the forked trial process, ask,
heartbeats, per-epoch reports, the pruner, the surplus guard and tell are the real ones; only
the training is made up, and so is the model a trial leaves for the loop to keep (a few bytes).

One worker: `python -m search.synthetic --storage URL --study NAME` on a study `create_study` made.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from pathlib import Path

import optuna

from search.artifacts import settle_keeping
from search.backends import get_backend
from search.kept import KeptModels
from search.process import quiet_optuna
from search.progress import Progress
from search.record import TrialPlan, TrialRecord
from search.reporting import Report
from search.storage import HEARTBEAT_SECONDS, open_storage
from search.trials import Prepared, run_trials

BACKEND, PRUNER = "random", "hyperband"  # the cheapest sampler: what is measured is the storage
EPOCHS = 5
WORK_SECONDS = 0.001  # CPU time each made-up epoch spends, so a trial does a few milliseconds of work


def create_study(
    url: str,
    name: str,
    *,
    n_trials: int,
    heartbeat: int = HEARTBEAT_SECONDS,
    keep_models: int = 0,
    artifacts: str | None = None,
) -> None:
    """A new synthetic study: what workers aim for, how often they beat, which made-up models they keep
    where, as `search run` records them."""
    study = optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=heartbeat), direction="maximize")
    study.set_user_attr("trials", n_trials)
    study.set_user_attr("heartbeat", heartbeat)
    settle_keeping(url, study, keep=keep_models, root=artifacts)


def curve(learning_rate: float, units: int, epoch: int) -> float:
    """A made-up validation accuracy after `epoch` epochs: rises to a plateau set by the params.

    Poor params plateau low from the first epoch on, so the pruner has something to prune.
    """
    plateau = 0.99 - 0.06 * (math.log10(learning_rate) + 2.5) ** 2 - 0.01 * abs(math.log2(units) - 8)
    return plateau - (plateau - 0.1) * math.exp(-epoch / 1.5)


class SyntheticObjective:
    """A `search.trials.TrialRunner` with a made-up curve: two params, `epochs` reports, each judged by the pruner."""

    def __init__(self, progress: Progress, epochs: int = EPOCHS, models: KeptModels | None = None) -> None:
        self.progress, self.epochs, self.models = progress, epochs, models

    def prepare(self, trial: optuna.Trial, plan: TrialPlan) -> Prepared:
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("units", 16, 1024, log=True)
        model = self.models.scratch_path(trial.number) if self.models is not None else None
        work = functools.partial(_made_up, learning_rate, units, self.epochs, model)
        return Prepared(TrialRecord(), self.epochs, work)

    def can_fork(self) -> bool:
        return True  # no TensorFlow here: every trial runs in a forked process, as real trials do

    def release_memory(self) -> None:
        return None


def _made_up(learning_rate: float, units: int, epochs: int, model: Path | None, report: Report) -> TrialRecord:
    """The trial's work: `epochs` made-up epochs, until `report` says stop."""
    if model is not None:
        # Saved whatever becomes of the trial, as a real one's is: the loop keeps only a complete trial's.
        model.write_text(f"made-up model: learning rate {learning_rate}, {units} units")
    for epoch in range(1, epochs + 1):
        _spin(WORK_SECONDS)
        value = curve(learning_rate, units, epoch)
        if report.epoch(epoch, value):
            break
    return TrialRecord(epochs_run=epoch, value=value)


def _spin(seconds: float) -> None:
    """Spend `seconds` of this thread's CPU time: work, not a sleep, so a busy machine stretches it."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def work(url: str, name: str, *, timeout: float | None = None, wait_for: Path | None = None) -> None:
    """Join synthetic study `name` as one worker and run the loop until it holds its trials.

    With `wait_for`, the worker says "ready" once it has joined and starts its first trial only
    when that file exists: a test starts several at once that way, however slowly each starts.
    """
    found = open_storage(url)
    attrs = found.get_study_user_attrs(found.get_study_id_from_name(name))
    found.engine.dispose()  # read once; a worker holds no idle connection it will not use
    storage = open_storage(url, heartbeat=attrs["heartbeat"])
    backend = get_backend(BACKEND)(seed=os.getpid(), pruner=PRUNER, epochs=EPOCHS)
    study = optuna.load_study(study_name=name, storage=storage, sampler=backend.make_sampler(0), pruner=backend.pruner)
    n_trials = attrs["trials"]
    models = KeptModels.of(settle_keeping(url, study, keep=None, root=None))
    if wait_for is not None:
        print("ready", flush=True)
        while not wait_for.exists():
            time.sleep(0.05)
    run_trials(study, backend, SyntheticObjective(Progress(n_trials, "value"), models=models), n_trials, timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search.synthetic", description=work.__doc__)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    parser.add_argument("--wait-for", type=Path, help="say ready, then start only once this file exists")
    args = parser.parse_args(argv)
    quiet_optuna()  # as the command line: the loop's trial lines say it once
    work(args.storage, args.study, timeout=args.timeout, wait_for=args.wait_for)


if __name__ == "__main__":
    sys.exit(main())
