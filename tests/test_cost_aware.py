"""`tpe-cost`: TPE weighing each candidate by its seconds per epoch, predicted from its network's arithmetic."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.backends import get_backend
from search.backends._cost_aware import STEP, CostAwareTPESampler, log_cost, work
from search.backends._optuna import TPE_SETTINGS
from search.config import TrialConfig
from search.record import TrialRecord
from spaces import SPACES

SPACE = {
    "width": CategoricalDistribution([256, 1024]),
    "depth": IntDistribution(1, 4),
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
}


def _nets(trial: Any, base: TrialConfig) -> TrialConfig:
    """A test space of `SPACE`'s parameters: `depth` layers of one `width`, and the rate."""
    width = trial.suggest_categorical("width", SPACE["width"].choices)
    depth = trial.suggest_int("depth", SPACE["depth"].low, SPACE["depth"].high)
    rate = trial.suggest_float("learning_rate", SPACE["learning_rate"].low, SPACE["learning_rate"].high, log=True)
    return base.replace(hidden_units=(width,) * depth, learning_rate=rate)


@pytest.fixture(autouse=True)
def nets() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SPACES, "nets", _nets)
        yield


def _study(**create: Any) -> optuna.Study:
    """A study of the `nets` space, as `search run` records one (the space and its base config)."""
    study = optuna.create_study(direction="maximize", **create)
    study.set_user_attr("space", "nets")
    study.set_user_attr("base_config", TrialConfig().to_dict())
    return study


def _epoch_seconds(width: int, depth: int) -> float:
    """A machine on which an epoch takes a microsecond per 100 multiply-adds an image, times 50,000 images."""
    return work(_nets(optuna.trial.FixedTrial({"width": width, "depth": depth, "learning_rate": 1e-3}), TrialConfig()))


def _finish(study: optuna.Study, params: dict, seconds: float, epochs: int, state=TrialState.COMPLETE) -> None:
    attrs = TrialRecord(seconds=seconds, epochs_run=epochs).to_attrs()
    values = [0.9] if state == TrialState.COMPLETE else None
    study.add_trial(
        optuna.trial.create_trial(state=state, params=params, distributions=SPACE, user_attrs=attrs, values=values)
    )


def test_an_epoch_costs_the_training_seconds_over_the_epochs_trained() -> None:
    assert TrialRecord(seconds=30.0, epochs_run=3).seconds_per_epoch == 10.0
    assert TrialRecord().seconds_per_epoch is None


def test_the_work_grows_with_the_network_and_the_augmentation_and_falls_with_the_batch() -> None:
    base = TrialConfig(hidden_units=(512, 512), batch_size=100)
    dense = 3 * (784 * 512 + 512 * 512 + 512 * 10)
    assert work(base) == pytest.approx(dense + STEP / 100)
    assert work(base.replace(hidden_units=(1024, 1024))) > 2 * work(base)
    assert work(base.replace(hidden_units=(512,))) < work(base)
    assert work(base.replace(batch_size=512)) < work(base) < work(base.replace(batch_size=64))
    affine, elastic = base.replace(augment_rotate=10.0), base.replace(augment_elastic_alpha=34.0)
    assert work(base) < work(affine) < work(elastic) < work(elastic.replace(augment_rotate=10.0))
    # The rate, the schedule, dropout: no arithmetic an epoch to speak of.
    assert work(base.replace(learning_rate=0.1, lr_schedule="cosine", dropout=0.5)) == work(base)


def _networks() -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    networks = [(w, d) for w in (256, 1024) for d in (1, 2, 3, 4)]
    samples = {  # internal values: the category's index
        "width": np.array([float(w == 1024) for w, _ in networks]),
        "depth": np.array([float(d) for _, d in networks]),
        "learning_rate": np.full(len(networks), 2e-3),
    }
    return networks, samples


def test_one_finished_trial_prices_every_candidate_on_its_machine() -> None:
    study = _study()
    networks, samples = _networks()
    assert log_cost(study, SPACE, samples).tolist() == [0.0] * len(networks), "nothing known, nothing predicted"
    # A machine twice as slow as `_epoch_seconds` says, seen on one small network, pruned after 3 epochs.
    _finish(
        study, {"width": 256, "depth": 1, "learning_rate": 1e-2}, 3 * 2 * _epoch_seconds(256, 1), 3, TrialState.PRUNED
    )
    predicted = np.exp(log_cost(study, SPACE, samples))
    assert predicted == pytest.approx([2 * _epoch_seconds(w, d) for w, d in networks], rel=1e-6)
    # A rate far from the trial's does not change what a network costs.
    far = log_cost(study, SPACE, {**samples, "learning_rate": np.full(len(networks), 1e-4)})
    assert np.exp(far) == pytest.approx(predicted)


def test_the_trials_correct_how_fast_seconds_grow_with_the_work() -> None:
    """On a machine where seconds grow as the square root of the work, the fitted slope follows them."""
    study = _study()
    networks, samples = _networks()
    for width, depth in networks:
        _finish(
            study, {"width": width, "depth": depth, "learning_rate": 1e-3}, math.sqrt(_epoch_seconds(width, depth)), 1
        )
    predicted = np.exp(log_cost(study, SPACE, samples))
    true = [math.sqrt(_epoch_seconds(w, d)) for w, d in networks]
    assert predicted == pytest.approx(true, rel=0.25)
    spread = math.log(max(true) / min(true))
    assert math.log(predicted.max() / predicted.min()) < 1.3 * spread, "not the slope of 1 it started from"


def test_a_parameter_that_costs_nothing_sampled_alone_leaves_every_candidate_alike() -> None:
    """Under `group`, the rate is sampled in its own subspace: the network is the same for every candidate."""
    study = _study()
    _finish(study, {"width": 1024, "depth": 4, "learning_rate": 1e-3}, 8.0, 1)
    spread = log_cost(study, {"learning_rate": SPACE["learning_rate"]}, {"learning_rate": np.array([1e-4, 1e-1])})
    assert spread[0] == spread[1]


def test_a_study_of_no_known_space_is_not_weighed() -> None:
    study = optuna.create_study(direction="maximize")
    _finish(study, {"width": 1024, "depth": 4, "learning_rate": 1e-3}, 8.0, 1)
    assert log_cost(study, SPACE, _networks()[1]).tolist() == [0.0] * 8


@pytest.mark.filterwarnings("ignore:`gamma` has been deprecated:FutureWarning")  # TPE_SETTINGS (_optuna.py)
def test_on_a_flat_objective_the_cost_aware_tpe_proposes_the_cheap_networks() -> None:
    """Accuracy that ignores the network, cost that does not: plain TPE goes on drawing dear networks
    about as often as cheap ones; the cost-aware one leaves them."""

    def dear_share(sampler: optuna.samplers.BaseSampler) -> float:
        study = _study(sampler=sampler)
        rng = np.random.default_rng(0)
        for _ in range(40):
            trial = study.ask()
            config = _nets(trial, TrialConfig())
            for key, value in (
                TrialRecord(seconds=_epoch_seconds(*config.hidden_units[:1], len(config.hidden_units)), epochs_run=1)
                .to_attrs()
                .items()
            ):
                trial.set_user_attr(key, value)
            study.tell(trial, 0.97 + 0.01 * rng.random() + 0.001 * math.log10(config.learning_rate))
        proposed = study.trials[TPE_SETTINGS["n_startup_trials"] :]
        return sum(t.params["width"] == 1024 and t.params["depth"] >= 3 for t in proposed) / len(proposed)

    plain = dear_share(optuna.samplers.TPESampler(seed=0, **TPE_SETTINGS))
    weighed = dear_share(CostAwareTPESampler(seed=0, **TPE_SETTINGS))
    print(f"\ndear networks proposed: plain TPE {plain:.0%}, cost-aware {weighed:.0%}")
    assert weighed < plain / 2, (weighed, plain)


def test_tpe_cost_is_a_backend_with_the_product_s_tpe_settings() -> None:
    backend = get_backend("tpe-cost")(seed=3, pruner="none", epochs=3)
    assert isinstance(backend.make_sampler(0), CostAwareTPESampler)
