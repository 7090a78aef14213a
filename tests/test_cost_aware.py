"""`tpe-cost`: TPE weighing each candidate by the seconds per epoch of the finished trials nearest it."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.backends import get_backend
from search.backends._cost_aware import MIN_TRIALS, CostAwareTPESampler, log_cost, seconds_per_epoch
from search.backends._optuna import TPE_SETTINGS
from search.record import TrialRecord

SPACE = {
    "width": CategoricalDistribution([256, 1024]),
    "depth": IntDistribution(1, 4),
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
}


def _epoch_seconds(width: int, depth: int) -> float:
    """A made-up cost: wide and deep networks are slow."""
    return 2.0 * depth * (4 if width == 1024 else 1)


def _finish(study: optuna.Study, params: dict, seconds: float, epochs: int, state=TrialState.COMPLETE) -> None:
    attrs = TrialRecord(seconds=seconds, epochs_run=epochs).to_attrs()
    values = [0.9] if state == TrialState.COMPLETE else None
    study.add_trial(
        optuna.trial.create_trial(state=state, params=params, distributions=SPACE, user_attrs=attrs, values=values)
    )


def test_an_epoch_costs_the_training_seconds_over_the_epochs_trained() -> None:
    made = optuna.trial.create_trial(value=0.9, user_attrs=TrialRecord(seconds=30.0, epochs_run=3).to_attrs())
    assert seconds_per_epoch(made) == 10.0
    assert seconds_per_epoch(optuna.trial.create_trial(value=0.9)) is None


def test_a_candidate_costs_what_its_nearest_trials_cost() -> None:
    study = optuna.create_study(direction="maximize")
    grid = [(w, d) for w in (256, 1024) for d in (1, 4)]
    for width, depth in grid:
        for rate in (1e-3, 1e-2):  # two trials per cost, so a candidate's 3 nearest share its network
            params = {"width": width, "depth": depth, "learning_rate": rate}
            _finish(study, params, seconds=3 * _epoch_seconds(width, depth), epochs=3)
    samples = {  # internal values: the category's index
        "width": np.array([1.0, 0.0, 1.0]),
        "depth": np.array([4.0, 1.0, 4.0]),
        "learning_rate": np.array([2e-3, 5e-3, 1e-4]),
    }
    predicted = np.exp(log_cost(study, SPACE, samples))
    # The first two have two exact matches (and a neighbour of another depth or width): 1024 x 4 is the dear one.
    assert predicted[0] > 4 * predicted[1]
    assert predicted[1] < _epoch_seconds(1024, 1)
    # A rate far from every trial's does not change what the network costs.
    assert predicted[2] == pytest.approx(predicted[0])


def test_nothing_is_predicted_from_few_trials_or_for_a_lone_conditional_parameter() -> None:
    study = optuna.create_study(direction="maximize")
    for k in range(MIN_TRIALS - 1):
        _finish(study, {"width": 1024, "depth": 4, "learning_rate": 1e-3 * (k + 1)}, seconds=8.0, epochs=1)
    samples = {"width": np.array([1.0]), "depth": np.array([4.0]), "learning_rate": np.array([1e-3])}
    assert log_cost(study, SPACE, samples).tolist() == [0.0], "too few trials"
    _finish(study, {"width": 256, "depth": 1, "learning_rate": 1e-2}, seconds=2.0, epochs=1, state=TrialState.PRUNED)
    assert log_cost(study, SPACE, samples)[0] == pytest.approx(math.log(8.0)), "pruned trials count"
    rate_only = {"learning_rate": SPACE["learning_rate"]}
    assert log_cost(study, rate_only, {"learning_rate": np.array([1e-3])}).tolist() == [0.0]


def test_on_a_flat_objective_the_cost_aware_tpe_proposes_the_cheap_networks() -> None:
    """Accuracy that ignores the network, cost that does not: plain TPE goes on drawing dear networks
    about as often as cheap ones; the cost-aware one leaves them."""

    def dear_share(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        rng = np.random.default_rng(0)
        for _ in range(40):
            trial = study.ask()
            width = trial.suggest_categorical("width", [256, 1024])
            depth = trial.suggest_int("depth", 1, 4)
            rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
            for key, value in TrialRecord(seconds=_epoch_seconds(width, depth), epochs_run=1).to_attrs().items():
                trial.set_user_attr(key, value)
            study.tell(trial, 0.97 + 0.01 * rng.random() + 0.001 * math.log10(rate))
        proposed = study.trials[TPE_SETTINGS["n_startup_trials"] :]
        return sum(t.params["width"] == 1024 and t.params["depth"] >= 3 for t in proposed) / len(proposed)

    plain = dear_share(optuna.samplers.TPESampler(seed=0, **TPE_SETTINGS))
    weighed = dear_share(CostAwareTPESampler(seed=0, **TPE_SETTINGS))
    print(f"\ndear networks proposed: plain TPE {plain:.0%}, cost-aware {weighed:.0%}")
    assert weighed < plain / 2, (weighed, plain)


def test_tpe_cost_is_a_backend_with_the_product_s_tpe_settings() -> None:
    backend = get_backend("tpe-cost")(seed=3, pruner="none", epochs=3)
    assert isinstance(backend.make_sampler(0), CostAwareTPESampler)
