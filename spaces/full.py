"""Space `full`: every technique at once, plus the rest of hyperparameter tuning (the note's conclusion).

Composes `size`, `dropout`, `batchnorm`, `schedule` and `augment` (their parameters and ranges,
see those modules) and adds: `optimizer` (adam, adamw, nadam, rmsprop, sgd), `activation`
(relu, elu, gelu, swish), `batch_size` (64, 100, 128, 256, 512) and `l2` (none = 0, 1e-6, 1e-5, 1e-4).
All are scientific or nuisance at once here; nothing of the base config stays fixed but
`epochs`, `seed` and the optimizers' secondary settings (momentum, weight decay).
"""

from __future__ import annotations

from typing import Any

from search.config import TrialConfig
from spaces import augment, batchnorm, dropout, schedule, size


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    config = size.suggest(trial, base)
    config = dropout.suggest_regularization(trial, config)
    config = batchnorm.suggest_placement(trial, config)
    config = schedule.suggest(trial, config)
    config = augment.suggest(trial, config)
    return config.replace(
        optimizer=trial.suggest_categorical("optimizer", ["adam", "adamw", "nadam", "rmsprop", "sgd"]),
        activation=trial.suggest_categorical("activation", ["relu", "elu", "gelu", "swish"]),
        batch_size=trial.suggest_categorical("batch_size", [64, 100, 128, 256, 512]),
        l2=trial.suggest_categorical("l2", [0.0, 1e-6, 1e-5, 1e-4]),
    )
