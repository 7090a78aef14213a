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


def get_space(name: str) -> Suggest:
    """The space called `name`, or a UserError listing the known ones."""
    if name not in SPACES:
        raise UserError(f"unknown space '{name}'; known spaces: {', '.join(SPACES)}")
    return SPACES[name]
