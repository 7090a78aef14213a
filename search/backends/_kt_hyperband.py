"""Hyperband's epochs and weights: how far a trial trains, which trial it continues, whose weights may go.

Duck-typed over Keras Tuner's `HyperbandOracle` (its `max_epochs`, `end_order` and bracket
bookkeeping), which `search.backends._keras_tuner` builds. The weights themselves are kept and
read by search/weights.py, as asha's are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from search.backends import _kt_internals as kt_internals
from search.record import TrialPlan


def hyperband_plan(oracle: Any, plan: TrialPlan, values: dict[str, Any], numbers: dict[str, int]) -> TrialPlan:
    """`plan` made to train a Hyperband trial as its bracket says: up to `tuner/epochs` and, for a
    promoted trial, on from the trial it was promoted from (`tuner/trial_id`; `numbers` maps Keras
    Tuner's trial ids to the study's trial numbers)."""
    plan = replace(plan, epochs=values["tuner/epochs"])
    parent = values.get("tuner/trial_id")
    if parent is not None:
        plan = replace(plan, kt_parent_id=parent, continues=numbers.get(parent))
    # A trial in its bracket's last round trains the full epochs and is never promoted: no weights to keep.
    return replace(plan, keep_weights=values["tuner/epochs"] < oracle.max_epochs)


def needed_weights(oracle: Any) -> set[str]:
    """The trials whose weights a promotion may still read.

    Hyperband promotes a completed trial only from round r into round r+1 of its own bracket, and
    at most once. So a trial's weights are needed while round r+1 still has a free place (unless
    the trial failed), or while the trial promoted from it has not ended (a child interrupted and
    retried reads them again). Once a bracket is complete and every child in it has ended, none
    of its weights is read again.
    """
    ended = set(oracle.end_order)
    promotable = {kt_id for kt_id, trial in oracle.trials.items() if kt_id not in ended or trial.status == "COMPLETED"}
    needed: set[str] = set()
    for bracket in kt_internals.brackets(oracle):
        rounds = bracket["rounds"]
        for r in range(len(rounds) - 1):
            if len(rounds[r + 1]) < kt_internals.round_size(oracle, bracket["bracket_num"], r + 1):
                needed.update(info["id"] for info in rounds[r] if info["id"] in promotable)
            needed.update(info["past_id"] for info in rounds[r + 1] if info["id"] not in ended)
    # A child waiting for its retry still reads its parent's weights, even once its bracket is complete.
    waiting = [*kt_internals.retry_queue(oracle), *(trial.trial_id for trial in oracle.ongoing_trials.values())]
    needed.update(oracle.trials[kt_id].hyperparameters.values.get("tuner/trial_id") for kt_id in waiting)
    return needed
