"""Space `batchnorm`: size plus where batch normalization goes (the note's chapter 3: before the activation).

Scientific: `batchnorm`, none or on either side of the activation.
Nuisance: the `size` parameters, searched along.
Fixed: the rest of the base config.
"""

from __future__ import annotations

from typing import Any

from search.config import BATCHNORM_PLACEMENTS, TrialConfig
from spaces import size


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    return suggest_placement(trial, size.suggest(trial, base))


def suggest_placement(trial: Any, config: TrialConfig) -> TrialConfig:
    """Only this space's own parameter, for spaces that compose it."""
    return config.replace(batchnorm=trial.suggest_categorical("batchnorm", list(BATCHNORM_PLACEMENTS)))
