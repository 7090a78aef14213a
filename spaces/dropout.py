"""Space `dropout`: size plus dropout and max-norm (the note's chapter 2: rate 0.2-0.5, train longer).

Scientific: `dropout` (before every hidden Dense after the first), `input_dropout` (on the
pixels) and `max_norm` (0 = none: a cap on each unit's incoming weight norm, which Srivastava
et al. 2014 pair with dropout).
Nuisance: the `size` parameters, searched along, since dropout pays off in bigger networks.
Fixed: the rest of the base config.
"""

from __future__ import annotations

from typing import Any

from search.config import TrialConfig
from spaces import size


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    return suggest_regularization(trial, size.suggest(trial, base))


def suggest_regularization(trial: Any, config: TrialConfig) -> TrialConfig:
    """Only this space's own parameters, for spaces that compose it."""
    return config.replace(
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        input_dropout=trial.suggest_float("input_dropout", 0.0, 0.3),
        max_norm=trial.suggest_categorical("max_norm", [0.0, 2.0, 3.0, 4.0]),
    )
