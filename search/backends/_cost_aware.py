"""TPE that weighs what a proposal costs: expected improvement per second of training.

Why: in a time budget, plain TPE loses to random search here. It settles next to its best
first-rung trials, which were the costly ones (2 x 1024 at batch 64), and so judges fewer trials:
10-13 in 8 minutes where random search judged 14-16 (BENCHMARKS.md, "After annealing per
stretch"). Asha compares trials at equal epochs, not equal seconds, so TPE never learns that.

What: TPE keeps, of its candidates, the one with the largest log l(x) - log g(x); this one
subtracts log c(x), the predicted seconds per epoch, so it keeps the largest ratio per second
(expected improvement per second, Snoek et al. 2012). c(x) is the geometric mean of the seconds
per epoch of the `NEIGHBOURS` finished trials nearest x in the subspace TPE samples: per
parameter, the distance is the difference over the parameter's range (on the log scale where it
is drawn on one) for numbers, 0 or 1 for categories.

Only subspaces of `MIN_PARAMS` or more parameters are weighed. With `group` TPE samples the
conditional parameters (a learning rate, a decay's epochs) alone, and one of them does not set a
trial's cost: the nearest trials by it alone differ in everything that does, so their cost would
add noise to the choice of a rate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from search.optuna_internals import PenalizedTPESampler
from search.record import TrialRecord

NEIGHBOURS = 3
MIN_PARAMS = 3
MIN_TRIALS = 5  # finished trials with a cost before any is predicted (TPE's own start-up count here)


def seconds_per_epoch(trial: FrozenTrial) -> float | None:
    """What an epoch of `trial` cost, from its record: training seconds over the epochs it trained."""
    record = TrialRecord.from_attrs(trial.user_attrs)
    if not record.seconds or not record.epochs_run:
        return None
    return record.seconds / record.epochs_run


def log_cost(study: optuna.Study, space: dict[str, BaseDistribution], samples: dict[str, np.ndarray]) -> np.ndarray:
    """log c(x) for each candidate: the mean log seconds per epoch of its nearest finished trials; 0 when unknown."""
    candidates = len(next(iter(samples.values())))
    if len(space) < MIN_PARAMS:
        return np.zeros(candidates)
    known = [
        (trial, cost)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if space.keys() <= trial.params.keys() and (cost := seconds_per_epoch(trial))
    ]
    if len(known) < MIN_TRIALS:
        return np.zeros(candidates)
    observed = {
        name: np.array([dist.to_internal_repr(t.params[name]) for t, _ in known]) for name, dist in space.items()
    }
    distances = sum(_distance(dist, samples[name][:, None], observed[name][None, :]) for name, dist in space.items())
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :NEIGHBOURS]
    costs = np.log([cost for _, cost in known])
    return costs[nearest].mean(axis=1)


def _distance(dist: BaseDistribution, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of internal values: 0 or 1 for a category, else the difference as a share of the range."""
    if isinstance(dist, CategoricalDistribution):
        return (a != b).astype(float)
    low, high = dist.low, dist.high
    if dist.log:
        a, b, low, high = np.log(a), np.log(b), math.log(low), math.log(high)
    return np.abs(a - b) / (high - low) if high > low else np.zeros(np.broadcast(a, b).shape)


class CostAwareTPESampler(PenalizedTPESampler):
    """TPE (its keyword arguments) weighing each candidate by its predicted seconds per epoch."""

    def __init__(self, **tpe: Any) -> None:
        super().__init__(penalty=log_cost, **tpe)
