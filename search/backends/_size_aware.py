"""The `size-aware` pruner: a trial goes on only while it keeps up with the trials no larger than it.

Optuna cannot prune a multi-objective trial (`Trial.report` raises; optuna/optuna#3450), so the
driver judges each epoch itself, from what every trial records (search/record.py): its size
(`trainable_params`, known before training, or `latency_ms`, measured after its first epoch) and
its per-epoch `history`. At epoch e a trial is pruned when its best validation score so far is
below the `QUANTILE` of the best scores the trials no larger than it had reached by epoch e, once
at least `MIN_PEERS` of them got that far. A trial that trails smaller ones is heading for the
dominated side of the front: costlier and no better. The smallest trials have the fewest peers
and are rarely judged, so the cheap end of the front is explored freely; the pruning saves time
at the costly end, where epochs cost most.

Peers are read once, when the trial starts: one worker finishes no other trial meanwhile, and a
trial of another worker that ends during this one counts from the next trial on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from search.record import TrialRecord

QUANTILE = 0.5  # the median: below half of the trials no larger than it at the same epoch
MIN_PEERS = 3  # fewer trials no larger than it say too little to stop one


@dataclass(frozen=True)
class Peer:
    """A finished trial as the pruner sees it: its size and its best score by each epoch (higher is better)."""

    size: float
    best_by_epoch: list[float]


def best_so_far(values: list[float], sign: float) -> list[float]:
    """Each epoch's best score up to it, signed so that higher is better (NaN epochs count as none)."""
    scores = [sign * v if math.isfinite(v) else -math.inf for v in values]
    return list(itertools.accumulate(scores, max))


class SizeAwarePruner:
    """Judges a trial at each epoch against the finished trials no larger than it (module docstring).

    `measure` is the size it compares: "params" or "latency"; `metric` the validation metric, and
    `sign` +1 where it is maximized.
    """

    def __init__(self, *, measure: str, metric: str, sign: float) -> None:
        self.measure, self.metric, self.sign = measure, metric, sign

    def size(self, record: TrialRecord) -> float | None:
        return record.latency_ms if self.measure == "latency" else record.trainable_params

    def peers(self, study: optuna.Study, number: int) -> list[Peer]:
        """The study's finished trials (complete or pruned) that record a size and a curve from epoch 1."""
        found = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            record = TrialRecord.from_attrs(trial.user_attrs)
            size, values = self.size(record), record.history.get(self.metric)
            if trial.number != number and size is not None and values and (record.first_epoch or 1) == 1:
                found.append(Peer(size, best_so_far(values, self.sign)))
        return found

    def should_prune(self, peers: list[Peer], size: float, values: list[float]) -> bool:
        """Whether a trial of `size` whose scores at epochs 1.. are `values` stops after the last of them."""
        epoch = len(values)
        reached = [p.best_by_epoch[epoch - 1] for p in peers if p.size <= size and len(p.best_by_epoch) >= epoch]
        if len(reached) < MIN_PEERS:
            return False
        return best_so_far(values, self.sign)[-1] < float(np.quantile(reached, QUANTILE))
