"""The registry of search spaces: `SPACES` maps a name to its `suggest(trial, base) -> TrialConfig`.

A space is a pure function of an Optuna-style trial (anything with `suggest_int`,
`suggest_float` and `suggest_categorical`): Optuna's `Trial` and `FixedTrial` as they are, and
Keras Tuner's `HyperParameters` through the adapter in `search.backends`. To add a space, add a
module here with a `suggest` function and list it below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search.config import TrialConfig
from search.data import MNIST
from search.errors import UserError
from spaces import augment, batchnorm, dropout, full, schedule, size

Suggest = Callable[[Any, TrialConfig], TrialConfig]

SPACES: dict[str, Suggest] = {
    "size": size.suggest,
    "dropout": dropout.suggest,
    "batchnorm": batchnorm.suggest,
    "schedule": schedule.suggest,
    "augment": augment.suggest,
    "full": full.suggest,
}


# A space's best known config, as changes to the study's base config: a new study's trial 1, so
# the search starts from a strong point as well as from the reference model (trial 0).
PRIORS: dict[str, dict[str, Any]] = {"full": full.PRIOR}
PRIORS_DATASET = MNIST  # where each was found: on other data it is no known good point


def prior(name: str, base: TrialConfig, dataset: str) -> TrialConfig | None:
    """Space `name`'s best known config on top of `base` (its epochs and seed), if it has one for `dataset`."""
    return base.replace(**PRIORS[name]) if name in PRIORS and dataset == PRIORS_DATASET else None


def params_for(name: str, config: TrialConfig) -> dict[str, Any]:
    """The parameters with which space `name` reproduces `config` (a study's enqueued trials).

    Parameters are named after the config field they set, except `n_layers` and
    `units_layer_<k>` (or `depth` and `width`), which spell out `hidden_units`, and
    `sgd_learning_rate`, sgd's `learning_rate`. The space is run once with a trial that answers
    every suggestion from `config`, so conditional parameters come out right.
    """
    probe = _Probe(config)
    get_space(name)(probe, config)
    return probe.params


def augmentation(name: str, base: TrialConfig) -> list[str]:
    """The augmentation keys space `name` can turn on: those its config sets at the top of every range.

    Spaces offer augmentation as none (0) first and more after, so its highest draw shows whether
    a space varies it at all, whatever its parameters are called.
    """
    return get_space(name)(_Highest(), base).augmentation()


class _Highest:
    """An Optuna-style trial that answers every suggestion with the highest value, or the last choice."""

    def suggest_int(self, name: str, low: int, high: int, **kwargs: Any) -> int:
        return high

    def suggest_float(self, name: str, low: float, high: float, **kwargs: Any) -> float:
        return high

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return choices[-1]


class _Probe:
    """An Optuna-style trial whose every suggestion is the config's value for that parameter."""

    def __init__(self, base: TrialConfig) -> None:
        self.base, self.params = base, {}

    def _value(self, name: str) -> Any:
        units = self.base.hidden_units
        if name in ("n_layers", "depth"):
            value = len(units)
        elif name.startswith("units_layer_"):
            value = units[int(name.removeprefix("units_layer_")) - 1]
        elif name == "width":
            value = units[0]
        elif name == "sgd_learning_rate":
            value = self.base.learning_rate
        else:
            value = getattr(self.base, name)
        self.params[name] = value
        return value

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._value(name)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._value(name)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._value(name)


def get_space(name: str) -> Suggest:
    """The space called `name`, or a UserError listing the known ones."""
    if name not in SPACES:
        raise UserError(f"unknown space '{name}'; known spaces: {', '.join(SPACES)}")
    return SPACES[name]
