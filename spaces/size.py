"""Space `size`: how deep and how wide (the note's chapter 1: start big, shrink while watching val_loss).

Scientific: `n_layers`, the hidden layers, and `units_layer_<k>`, the width of each (powers of
two), which exists only for the layers there are.
Fixed: everything else, from the base config (the reference model: ReLU, Adam 0.001, batch 100).
"""

from __future__ import annotations

from typing import Any

from search.config import TrialConfig
from spaces._scope import only_when

MAX_LAYERS = 8
# 8 is in so that the reference model (its last hidden layer has 8 units) is a point of the space;
# 2048 because the records for plain MLPs on MNIST use 800 to 8192 units a layer (issue 15), and
# 4096 would cost about 30 s an epoch for two layers on a 2-core CPU, too much for a 60-minute search.
UNITS = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
    units = []
    for k in range(1, n_layers + 1):
        with only_when(trial, "n_layers", range(k, MAX_LAYERS + 1)):
            units.append(trial.suggest_categorical(f"units_layer_{k}", UNITS))
    return base.replace(hidden_units=tuple(units))
