"""Space `schedule`: learning-rate decay (the note's chapter 4: halve every 5 epochs, x0.1 every 20, or on plateau).

Scientific: `lr_schedule` (constant, step, exponential, cosine, plateau).
Nuisance: `learning_rate`, and the settings of the schedules that have them (`lr_decay_factor`,
`lr_decay_epochs`, `lr_patience`), each only where its schedule is drawn.
Fixed: the network and the rest of the base config (the reference model).
"""

from __future__ import annotations

from typing import Any

from search.config import LR_SCHEDULES, TrialConfig
from spaces._scope import only_when

LEARNING_RATES = (1e-4, 3e-2)  # for Adam and its kin; the reference model's 1e-3 near its log middle


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    config = suggest_decay(trial, base)
    return config.replace(learning_rate=trial.suggest_float("learning_rate", *LEARNING_RATES, log=True))


def suggest_decay(trial: Any, config: TrialConfig) -> TrialConfig:
    """Only the schedule and its own parameters, for spaces that draw the rate themselves."""
    lr_schedule = trial.suggest_categorical("lr_schedule", list(LR_SCHEDULES))
    changes: dict[str, Any] = {"lr_schedule": lr_schedule}
    decaying = ["step", "exponential", "plateau"]
    if lr_schedule in decaying:
        with only_when(trial, "lr_schedule", decaying):
            changes["lr_decay_factor"] = trial.suggest_float("lr_decay_factor", 0.1, 0.9)
    if lr_schedule in ("step", "exponential"):
        with only_when(trial, "lr_schedule", ["step", "exponential"]):
            changes["lr_decay_epochs"] = trial.suggest_int("lr_decay_epochs", 1, 10)
    if lr_schedule == "plateau":
        with only_when(trial, "lr_schedule", ["plateau"]):
            changes["lr_patience"] = trial.suggest_int("lr_patience", 1, 5)
    return config.replace(**changes)
