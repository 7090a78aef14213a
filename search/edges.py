"""Searched values at the edge of their range: the range was likely too small (a warning of `search export`)."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

# A best value this close to an end of its range (as a fraction of the range, in log space for
# log-scaled ones) counts as at the edge: a sampler rarely lands exactly on a float bound.
EDGE_FRACTION = 0.02


def boundary_warnings(trial: FrozenTrial, space: str) -> list[str]:
    """One line per searched value at the edge of its range: the range was likely too small.

    Numeric ranges and categorical choices that are all numbers (taken in order) are checked;
    other choices and ranges of fewer than three values have no meaningful edge.
    """
    # Name the space, not a file: a space may take the range from another one (batchnorm uses size's units).
    where = f"space '{space}' (spaces/)"
    lines = []
    for name, value in trial.params.items():
        edge = _edge(trial.distributions[name], value)
        if edge is None:
            continue
        low, high = _bounds(trial.distributions[name])
        if edge == "top":
            why = f"the best may lie above it; widen its range in {where} and search again"
        elif low == 0:
            why = "0 is off and cannot go lower, so the search found little or none of it helps here"
        else:
            why = f"the best may lie below it; widen its range in {where} and search again"
        lines.append(f"{name} = {value} is at the {edge} of its searched range ({low} to {high}): {why}")
    return lines


def _bounds(distribution: BaseDistribution) -> tuple[Any, Any]:
    if isinstance(distribution, CategoricalDistribution):
        return min(distribution.choices), max(distribution.choices)
    return distribution.low, distribution.high


def _edge(distribution: BaseDistribution, value: Any) -> str | None:
    """Which end of `distribution` ("top" or "bottom") `value` sits at, or None."""
    if isinstance(distribution, CategoricalDistribution):
        choices = distribution.choices
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
        if not numeric or len(choices) < 3:
            return None
        return "top" if value == max(choices) else "bottom" if value == min(choices) else None
    if isinstance(distribution, IntDistribution) and distribution.high - distribution.low < 2:
        return None
    if not isinstance(distribution, (IntDistribution, FloatDistribution)):
        return None
    scale = math.log if distribution.log else float
    low, high, at = scale(distribution.low), scale(distribution.high), scale(value)
    margin = 0 if isinstance(distribution, IntDistribution) else EDGE_FRACTION * (high - low)
    return "top" if at >= high - margin else "bottom" if at <= low + margin else None
