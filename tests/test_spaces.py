"""Tests for spaces/: every space through a real Optuna study and through FixedTrial, one contract for all."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import optuna
import pytest
from optuna.samplers import RandomSampler
from optuna.trial import FixedTrial

import spaces
from search.config import TrialConfig
from search.data import MNIST
from search.errors import UserError
from spaces._catalog import catalog

# A base away from the defaults in the fields no space searches, so leaks from defaults show.
BASE = TrialConfig(epochs=3, seed=7, momentum=0.8, weight_decay=0.01, early_stopping_patience=2)
N_TRIALS = 10

# The ranges each module docstring states, one entry per parameter name: a list of the allowed
# choices, or (low, high) for ints and floats. A new space's new parameter must be listed here.
RANGES: dict[str, Any] = {
    "n_layers": (1, 8),
    **{f"units_layer_{k}": [8, 16, 32, 64, 128, 256, 512, 1024, 2048] for k in range(1, 9)},
    "dropout": (0.0, 0.5),
    "input_dropout": (0.0, 0.3),
    "max_norm": [0.0, 2.0, 3.0, 4.0],
    "batchnorm": ["none", "before_activation", "after_activation"],
    "lr_schedule": ["constant", "step", "exponential", "cosine", "plateau"],
    "depth": (1, 4),
    "width": [256, 512, 1024],
    "learning_rate": (1e-4, 3e-2),
    "sgd_learning_rate": (1e-2, 0.3),
    "lr_decay_factor": (0.1, 0.9),
    "lr_decay_epochs": (1, 10),
    "lr_patience": (1, 5),
    "augment_translate": [0.0, 0.05, 0.1, 0.15],
    "augment_rotate": [0.0, 5.0, 10.0, 15.0, 20.0],
    "augment_zoom": [0.0, 0.05, 0.1, 0.15],
    "augment_elastic_alpha": [0.0, 16.0, 34.0],
    "augment_elastic_sigma": [4.0, 6.0],
    "optimizer": ["adam", "adamw", "nadam", "rmsprop", "sgd"],
    "activation": ["relu", "elu", "gelu", "swish"],
    "batch_size": [64, 100, 128, 256, 512],
    "l2": [0.0, 1e-6, 1e-5, 1e-4],
}


def _random_trials(name: str, n: int = N_TRIALS, seed: int = 0) -> list[tuple[optuna.Trial, TrialConfig]]:
    """`n` real Optuna trials of space `name`, with the config each one produced."""
    study = optuna.create_study(sampler=RandomSampler(seed=seed))
    results = []
    for _ in range(n):
        trial = study.ask()
        config = spaces.SPACES[name](trial, BASE)
        study.tell(trial, 0.0)
        results.append((trial, config))
    return results


def _in_range(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, list):
        return value in allowed
    low, high = allowed
    return low <= value <= high


@pytest.fixture(params=sorted(spaces.SPACES))
def space_name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_random_trials_give_valid_configs_within_the_documented_ranges(space_name: str) -> None:
    for trial, config in _random_trials(space_name):
        assert type(config) is TrialConfig
        assert trial.params, "a space must search something"
        for param, value in trial.params.items():
            assert param in RANGES, f"{space_name}: parameter {param!r} has no documented range in this test"
            assert _in_range(value, RANGES[param]), (space_name, param, value)
        _assert_config_follows_params(config, trial.params)


def _assert_config_follows_params(config: TrialConfig, params: dict[str, Any]) -> None:
    """Each searched field holds its parameter's value; every other field is the base's."""
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    for param, value in params.items():
        if param in fields:
            assert getattr(config, param) == value, param
    changed = {f for f in fields if getattr(config, f) != getattr(BASE, f)}
    if "n_layers" in params:
        assert config.hidden_units == tuple(params[f"units_layer_{k}"] for k in range(1, params["n_layers"] + 1))
        changed.discard("hidden_units")
    if "depth" in params:
        assert config.hidden_units == (params["width"],) * params["depth"]
        changed.discard("hidden_units")
    if "sgd_learning_rate" in params:
        assert (config.optimizer, config.learning_rate) == ("sgd", params["sgd_learning_rate"])
        changed.discard("learning_rate")
    assert changed <= set(params), f"fields changed without a parameter: {changed - set(params)}"


def test_conditional_parameters_exist_only_when_they_apply(space_name: str) -> None:
    for trial, _ in _random_trials(space_name, n=30):
        params = trial.params
        if "n_layers" in params:
            units = {p for p in params if p.startswith("units_layer_")}
            assert units == {f"units_layer_{k}" for k in range(1, params["n_layers"] + 1)}
        if "lr_schedule" in params:
            schedule = params["lr_schedule"]
            assert ("lr_decay_factor" in params) == (schedule in ("step", "exponential", "plateau")), params
            assert ("lr_decay_epochs" in params) == (schedule in ("step", "exponential")), params
            assert ("lr_patience" in params) == (schedule == "plateau"), params


def test_the_catalog_finds_every_parameter_a_search_draws_with_its_range(space_name: str) -> None:
    """What `search spaces` prints, found by running the space, against what 60 real Optuna draws reach."""
    drawn = {p: d for trial, _ in _random_trials(space_name, n=60, seed=1) for p, d in trial.distributions.items()}
    found = {param.name: param for param in catalog(spaces.SPACES[space_name], BASE)}
    assert found.keys() == drawn.keys()
    for name, distribution in drawn.items():
        param = found[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            assert param.choices == distribution.choices
        else:
            assert (param.low, param.high, param.log) == (distribution.low, distribution.high, distribution.log)


def test_the_catalog_says_when_a_parameter_exists() -> None:
    size = {param.name: param for param in catalog(spaces.SPACES["size"], BASE)}
    assert size["n_layers"].conditions == () and size["n_layers"].describe() == "int 1 to 8"
    assert size["units_layer_3"].conditions == (("n_layers", tuple(range(3, 9))),)
    assert size["units_layer_3"].describe().endswith("; only when n_layers in 3-8")
    schedule = {param.name: param for param in catalog(spaces.SPACES["schedule"], BASE)}
    assert schedule["lr_patience"].describe() == "int 1 to 5; only when lr_schedule in {plateau}"
    assert schedule["learning_rate"].describe() == "float 0.0001 to 0.03, log scale"


def test_every_space_module_has_a_docstring(space_name: str) -> None:
    doc = inspect.getmodule(spaces.SPACES[space_name]).__doc__
    assert doc and doc.startswith(f"Space `{space_name}`"), doc


def test_unknown_space_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as error:
        spaces.get_space("nope")
    message = str(error.value)
    assert "'nope'" in message
    for name in ("size", "dropout", "batchnorm", "schedule", "augment", "full"):
        assert name in spaces.SPACES
        assert name in message


def test_full_searches_every_other_space_with_the_same_ranges_but_its_own_network_and_rates() -> None:
    # 60 seeded trials include every schedule, depth and optimizer, so every conditional appears.
    full = _random_trials("full", n=60, seed=1)
    full_names = {p for trial, _ in full for p in trial.params}
    full_distributions = {p: d for trial, _ in full for p, d in trial.distributions.items()}
    for name in spaces.SPACES:
        if name == "full":
            continue
        for trial, _ in _random_trials(name, n=60, seed=1):
            for param, distribution in trial.distributions.items():
                if param == "n_layers" or param.startswith("units_layer_"):
                    continue  # full's network is `depth` x one `width` (its module docstring)
                assert full_distributions[param] == distribution, (name, param)
    assert {"optimizer", "activation", "batch_size", "l2", "depth", "width", "sgd_learning_rate"} <= full_names
    assert not any(p == "n_layers" or p.startswith("units_layer_") for p in full_names)
    assert "lr_patience" in full_names and "lr_decay_epochs" in full_names
    for trial, config in full:
        rate = "sgd_learning_rate" if config.optimizer == "sgd" else "learning_rate"
        assert trial.params[rate] == config.learning_rate
        assert ({"learning_rate", "sgd_learning_rate"} - {rate}).isdisjoint(trial.params)


SIZE_2 = {"n_layers": 2, "units_layer_1": 2048, "units_layer_2": 16}
SCHEDULE_STEP = {"lr_schedule": "step", "learning_rate": 0.01, "lr_decay_factor": 0.5, "lr_decay_epochs": 3}

FIXED_CASES = [
    ("size", SIZE_2, {"hidden_units": (2048, 16)}),
    ("size", {"n_layers": 1, "units_layer_1": 64}, {"hidden_units": (64,)}),
    (
        "dropout",
        {**SIZE_2, "dropout": 0.25, "input_dropout": 0.1, "max_norm": 3.0},
        {"hidden_units": (2048, 16), "dropout": 0.25, "input_dropout": 0.1, "max_norm": 3.0},
    ),
    (
        "batchnorm",
        {**SIZE_2, "batchnorm": "before_activation"},
        {"hidden_units": (2048, 16), "batchnorm": "before_activation"},
    ),
    ("schedule", {"lr_schedule": "constant", "learning_rate": 0.02}, {"learning_rate": 0.02}),
    ("schedule", SCHEDULE_STEP, {**SCHEDULE_STEP, "lr_schedule": "step"}),
    (
        "schedule",
        {"lr_schedule": "plateau", "learning_rate": 0.005, "lr_decay_factor": 0.2, "lr_patience": 4},
        {"lr_schedule": "plateau", "learning_rate": 0.005, "lr_decay_factor": 0.2, "lr_patience": 4},
    ),
    (
        "augment",
        {
            "augment_translate": 0.1,
            "augment_rotate": 15.0,
            "augment_zoom": 0.05,
            "augment_elastic_alpha": 34.0,
            "augment_elastic_sigma": 6.0,
        },
        {
            "augment_translate": 0.1,
            "augment_rotate": 15.0,
            "augment_zoom": 0.05,
            "augment_elastic_alpha": 34.0,
            "augment_elastic_sigma": 6.0,
        },
    ),
    (
        "full",
        {
            "depth": 3,
            "width": 1024,
            "dropout": 0.3,
            "input_dropout": 0.2,
            "max_norm": 4.0,
            "batchnorm": "after_activation",
            **{key: value for key, value in SCHEDULE_STEP.items() if key != "learning_rate"},
            "augment_translate": 0.05,
            "augment_rotate": 5.0,
            "augment_zoom": 0.1,
            "augment_elastic_alpha": 0.0,
            "optimizer": "sgd",
            "sgd_learning_rate": 0.05,
            "activation": "gelu",
            "batch_size": 256,
            "l2": 1e-5,
        },
        {
            "hidden_units": (1024, 1024, 1024),
            "dropout": 0.3,
            "input_dropout": 0.2,
            "max_norm": 4.0,
            "batchnorm": "after_activation",
            **SCHEDULE_STEP,
            "learning_rate": 0.05,
            "augment_translate": 0.05,
            "augment_rotate": 5.0,
            "augment_zoom": 0.1,
            "augment_elastic_alpha": 0.0,
            "optimizer": "sgd",
            "activation": "gelu",
            "batch_size": 256,
            "l2": 1e-5,
        },
    ),
]


@pytest.mark.parametrize(("name", "params", "changes"), FIXED_CASES, ids=[case[0] for case in FIXED_CASES])
def test_fixed_trial_gives_exactly_the_expected_config(name: str, params: dict, changes: dict) -> None:
    trial = FixedTrial(params)
    assert spaces.SPACES[name](trial, BASE) == BASE.replace(**changes)
    assert trial.params == params  # every given parameter was asked for, and nothing else


def test_fixed_cases_cover_every_space() -> None:
    assert {case[0] for case in FIXED_CASES} == set(spaces.SPACES)


def test_fixed_trial_ignores_parameters_that_do_not_apply() -> None:
    trial = FixedTrial({**SIZE_2, "units_layer_3": 512, "lr_patience": 3, **SCHEDULE_STEP})
    assert spaces.SPACES["size"](trial, BASE).hidden_units == (2048, 16)
    assert spaces.SPACES["schedule"](trial, BASE).lr_patience == BASE.lr_patience
    assert "units_layer_3" not in trial.params
    assert "lr_patience" not in trial.params


@pytest.mark.parametrize("name", sorted(spaces.PRIORS))
def test_a_spaces_best_known_config_is_a_point_of_it(name):
    known = spaces.prior(name, BASE, MNIST)
    assert known != BASE
    params = spaces.params_for(name, known)
    study = optuna.create_study()
    study.enqueue_trial(params)
    assert spaces.SPACES[name](study.ask(), BASE) == known
