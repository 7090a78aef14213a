"""`tpe-cost`: TPE weighing each candidate by its seconds per epoch, predicted from the finished trials."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.backends import get_backend
from search.backends._cost_aware import MIN_TRIALS, CostAwareTPESampler, log_cost
from search.backends._optuna import TPE_SETTINGS
from search.record import TrialRecord

SPACE = {
    "width": CategoricalDistribution([256, 1024]),
    "depth": IntDistribution(1, 4),
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
}


def _epoch_seconds(width: int, depth: int) -> float:
    """A made-up cost: wide and deep networks are slow."""
    return 2.0 * depth * (5 if width == 1024 else 1)


def _finish(study: optuna.Study, params: dict, seconds: float, epochs: int, state=TrialState.COMPLETE) -> None:
    attrs = TrialRecord(seconds=seconds, epochs_run=epochs).to_attrs()
    values = [0.9] if state == TrialState.COMPLETE else None
    study.add_trial(
        optuna.trial.create_trial(state=state, params=params, distributions=SPACE, user_attrs=attrs, values=values)
    )


def test_an_epoch_costs_the_training_seconds_over_the_epochs_trained() -> None:
    assert TrialRecord(seconds=30.0, epochs_run=3).seconds_per_epoch == 10.0
    assert TrialRecord().seconds_per_epoch is None


def _study_of_every_network(rates: tuple[float, ...] = (1e-3, 1e-2)) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for width in (256, 1024):
        for depth in (1, 2, 3, 4):
            for rate in rates:
                params = {"width": width, "depth": depth, "learning_rate": rate}
                _finish(study, params, seconds=3 * _epoch_seconds(width, depth), epochs=3)
    return study


def test_candidates_cost_what_trials_like_them_cost() -> None:
    study = _study_of_every_network()
    networks = [(w, d) for w in (256, 1024) for d in (1, 2, 3, 4)]
    samples = {  # internal values: the category's index
        "width": np.array([float(w == 1024) for w, _ in networks]),
        "depth": np.array([float(d) for _, d in networks]),
        "learning_rate": np.full(len(networks), 2e-3),
    }
    predicted = np.exp(log_cost(study, SPACE, samples))
    true = [_epoch_seconds(w, d) for w, d in networks]
    assert np.argsort(predicted).tolist() == np.argsort(true).tolist()
    assert predicted.max() > 4 * predicted.min(), "shrunk towards the mean, but far apart still"
    # A rate far from every trial's does not change what a network costs: the rate never did.
    far = log_cost(study, SPACE, {**samples, "learning_rate": np.full(len(networks), 1e-4)})
    assert np.exp(far) == pytest.approx(predicted, rel=0.02)


def test_nothing_is_predicted_from_few_trials_and_a_parameter_that_costs_nothing_barely_counts() -> None:
    study = optuna.create_study(direction="maximize")
    for k in range(MIN_TRIALS - 1):
        _finish(study, {"width": 1024, "depth": 4, "learning_rate": 1e-3 * (k + 1)}, seconds=8.0, epochs=1)
    samples = {"width": np.array([1.0]), "depth": np.array([4.0]), "learning_rate": np.array([1e-3])}
    assert log_cost(study, SPACE, samples).tolist() == [0.0], "too few trials"
    _finish(study, {"width": 256, "depth": 1, "learning_rate": 1e-2}, seconds=2.0, epochs=1, state=TrialState.PRUNED)
    assert log_cost(study, SPACE, samples)[0] > math.log(2.0), "pruned trials count"
    # The rate sampled alone (a conditional parameter under `group`), on trials whose cost it never set.
    rate_only = {"learning_rate": SPACE["learning_rate"]}
    spread = log_cost(_study_of_every_network(), rate_only, {"learning_rate": np.array([1e-4, 1e-1])})
    assert abs(spread[0] - spread[1]) < 0.01


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
