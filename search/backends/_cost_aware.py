"""TPE that weighs what a proposal costs: expected improvement per second of training.

Why: in a time budget, plain TPE loses to random search here. It settles next to its best
first-rung trials, which were the costly ones (2 x 1024 at batch 64), and so judges fewer trials:
10-13 in 8 minutes where random search judged 14-16 (BENCHMARKS.md, "After annealing per
stretch"). Asha compares trials at equal epochs, not equal seconds, so TPE never learns that.

What: TPE keeps, of its candidates, the one with the largest log l(x) - log g(x); this one
subtracts log c(x), the predicted seconds per epoch, so it keeps the largest ratio per second
(expected improvement per second, Snoek et al. 2012).

How c(x) is predicted: from the arithmetic the candidate's network does per training image,
known before it trains (`work`: the dense layers' multiply-adds, forward and backward, plus the
augmentation layers and a cost per step), then scaled to this machine by the finished trials,
log c = a + b log work, with b drawn towards 1 (the seconds follow the arithmetic) until the
trials say otherwise. One finished trial is enough to predict. The regression on the raw
parameters that came before needed tens of trials: with the 5 to 10 of a short search it
predicted the mean for every candidate and left TPE's choice alone (BENCHMARKS.md, "Cost-aware
TPE"). A parameter that does not change the work (a learning rate, sampled alone under
`group`) gives every candidate the same cost, so it leaves TPE's choice alone.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from search.config import TrialConfig
from search.data import MNIST_INPUTS, Inputs
from search.optuna_internals import PenalizedTPESampler
from search.record import TrialRecord
from spaces import SPACES
from spaces._catalog import config_at

# Per pixel of a training image, in multiply-adds of a dense layer that cost the same time
# (measured on the reference model: BENCHMARKS.md, "Elastic distortions: epoch cost" and below).
ELASTIC = 2300.0
AFFINE = 660.0
# A training step's fixed cost (dispatch, optimizer update, the schedule), in multiply-adds,
# shared by the images of a batch.
STEP = 1.5e8
SLOPE_PRIOR = 1.0  # how many trials' worth of belief that seconds grow as the work does (b = 1)


def work(config: TrialConfig, inputs: Inputs = MNIST_INPUTS) -> float:
    """Multiply-adds (or their time's worth) one training image costs an epoch, from the config alone.

    The dense layers forward and twice backward; augmentation per pixel; the step's fixed cost
    over the batch. Dropout, batch normalization and the optimizer are left out: under a few
    percent of an epoch each. The shape is MNIST's: the costs of other data scale alike.
    """
    pixels = math.prod(inputs.shape)
    widths = (pixels, *config.hidden_units, inputs.n_classes)
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    on = config.augmentation()
    elastic = ELASTIC * pixels if "augment_elastic_alpha" in on else 0.0
    affine = AFFINE * pixels if set(on) - {"augment_elastic_alpha"} else 0.0
    return 3.0 * weights + elastic + affine + STEP / config.batch_size


def log_cost(study: optuna.Study, space: dict[str, BaseDistribution], samples: dict[str, np.ndarray]) -> np.ndarray:
    """log c(x) for each candidate, scaled by the finished trials' log seconds per epoch; 0 when none is known."""
    n_candidates = len(next(iter(samples.values())))
    suggest = SPACES.get(study.user_attrs.get("space", ""))
    known = [
        (trial.params, cost)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if (cost := TrialRecord.from_attrs(trial.user_attrs).seconds_per_epoch)
    ]
    if suggest is None or not known:
        return np.zeros(n_candidates)
    base = TrialConfig.from_dict(study.user_attrs["base_config"])

    def log_work(values: dict[str, Any]) -> float:
        return math.log(work(config_at(suggest, base, values)))

    observed = np.array([log_work(params) for params, _ in known])
    seconds = np.log([cost for _, cost in known])
    slope = _slope(observed, seconds)
    candidates = [
        log_work({name: dist.to_external_repr(samples[name][k]) for name, dist in space.items()})
        for k in range(n_candidates)
    ]
    return seconds.mean() + slope * (np.array(candidates) - observed.mean())


def _slope(log_work: np.ndarray, log_seconds: np.ndarray) -> float:
    """b of log seconds = a + b log work, by least squares drawn towards 1 (`SLOPE_PRIOR`); never below 0."""
    x = log_work - log_work.mean()
    rest = log_seconds - log_seconds.mean() - x  # what b = 1 leaves unexplained
    return max(0.0, 1.0 + float(x @ rest) / (float(x @ x) + SLOPE_PRIOR))


class CostAwareTPESampler(PenalizedTPESampler):
    """TPE (its keyword arguments) weighing each candidate by its predicted seconds per epoch."""

    def __init__(self, **tpe: Any) -> None:
        super().__init__(penalty=log_cost, **tpe)
