"""TPE that weighs what a proposal costs: expected improvement per second of training.

Why: in a time budget, plain TPE loses to random search here. It settles next to its best
first-rung trials, which were the costly ones (2 x 1024 at batch 64), and so judges fewer trials:
10-13 in 8 minutes where random search judged 14-16 (BENCHMARKS.md, "After annealing per
stretch"). Asha compares trials at equal epochs, not equal seconds, so TPE never learns that.

What: TPE keeps, of its candidates, the one with the largest log l(x) - log g(x); this one
subtracts log c(x), the predicted seconds per epoch, so it keeps the largest ratio per second
(expected improvement per second, Snoek et al. 2012). log c(x) is a ridge regression on the
finished trials of the subspace TPE samples: each category one 0/1 column, each number its
place in its range (on the log scale where it is drawn on one). Ridge, not nearest trials: of
the 16 parameters of `full`'s main group most do not change the cost, and the nearest trials
by all of them predicted it no better than the mean (leave-one-out on 40 trials of a product
run: error 0.60 in log seconds against 0.63 for the mean, 0.47 for ridge at `RIDGE`). A
parameter that does not change the cost (a learning rate sampled alone, under `group`) gets a
coefficient near 0, so it leaves TPE's choice alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from search.optuna_internals import PenalizedTPESampler
from search.record import TrialRecord

RIDGE = 3.0  # the penalty on the coefficients; 3 to 10 predicted best (above)
MIN_TRIALS = 5  # finished trials with a cost before any is predicted (TPE's own start-up count here)


def log_cost(study: optuna.Study, space: dict[str, BaseDistribution], samples: dict[str, np.ndarray]) -> np.ndarray:
    """log c(x) for each candidate, from the finished trials' log seconds per epoch; 0 when too few are known."""
    known = [
        (trial, cost)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if space.keys() <= trial.params.keys() and (cost := TrialRecord.from_attrs(trial.user_attrs).seconds_per_epoch)
    ]
    if len(known) < MIN_TRIALS:
        return np.zeros(len(next(iter(samples.values()))))
    observed = _columns(
        space, {name: [dist.to_internal_repr(t.params[name]) for t, _ in known] for name, dist in space.items()}
    )
    costs = np.log([cost for _, cost in known])
    center, mean = observed.mean(axis=0), costs.mean()
    centered = observed - center
    weights = np.linalg.solve(centered.T @ centered + RIDGE * np.eye(centered.shape[1]), centered.T @ (costs - mean))
    return mean + (_columns(space, samples) - center) @ weights


def _columns(space: dict[str, BaseDistribution], values: dict[str, Any]) -> np.ndarray:
    """The regression's inputs, one row per point: a 0/1 column per category, a number's place in its range."""
    columns = []
    for name, dist in space.items():
        value = np.asarray(values[name], dtype=float)
        if isinstance(dist, CategoricalDistribution):
            columns += [(value == index).astype(float) for index in range(len(dist.choices))]
            continue
        low, high = dist.low, dist.high
        if dist.log:
            value, low, high = np.log(value), math.log(low), math.log(high)
        columns.append((value - low) / (high - low) if high > low else np.zeros_like(value))
    return np.column_stack(columns)


class CostAwareTPESampler(PenalizedTPESampler):
    """TPE (its keyword arguments) weighing each candidate by its predicted seconds per epoch."""

    def __init__(self, **tpe: Any) -> None:
        super().__init__(penalty=log_cost, **tpe)
