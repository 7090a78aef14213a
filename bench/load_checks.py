"""What must hold after many workers ran one study, whatever the engine: for bench/storage_load.py and its test."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

# What a storage under strain prints: SQLite's lock, PostgreSQL's connection limit and conflicts.
STORAGE_ERRORS = (
    "database is locked",
    "too many clients",
    "remaining connection slots",
    "deadlock detected",
    "could not serialize",
    "OperationalError",
    "IntegrityError",
    "Traceback",
)


def end_state_problems(trials: list[FrozenTrial], n_trials: int, epochs: int, killed: Iterable[int] = ()) -> list[str]:
    """Each broken invariant in one line; an empty list when the study's end state is right.

    Exactly `n_trials` finished (complete or pruned) trials, no number twice, none left RUNNING
    or WAITING, every finished trial's per-epoch values present from epoch 1 to its last (all
    `epochs` for a complete one), and each trial in `killed` failed and queued again.
    """
    problems = []
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if len(finished) != n_trials:
        problems.append(f"{len(finished)} finished trials, not {n_trials}")
    twice = sorted(n for n, k in collections.Counter(t.number for t in trials).items() if k > 1)
    if twice:
        problems.append(f"trial numbers twice: {twice}")
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if left:
        problems.append(f"left running or waiting: {left}")
    gaps = [t.number for t in finished if not _curve_complete(t, epochs)]
    if gaps:
        problems.append(f"intermediate values missing in trials {gaps}")
    by_number = {t.number: t for t in trials}
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    lost = [k for k in killed if by_number[k].state != TrialState.FAIL or k not in retried]
    if lost:
        problems.append(f"killed trials not failed and retried: {lost}")
    return problems


def _curve_complete(trial: FrozenTrial, epochs: int) -> bool:
    steps = sorted(trial.intermediate_values)
    last = epochs if trial.state == TrialState.COMPLETE else trial.user_attrs.get("epochs_run", 0)
    return steps == list(range(1, last + 1)) and last >= 1


def storage_errors(logs: Iterable[Path]) -> dict[str, int]:
    """How many lines of the workers' output name each kind of storage error."""
    counts: collections.Counter[str] = collections.Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            counts.update(kind for kind in STORAGE_ERRORS if kind in line)
    return dict(counts)
