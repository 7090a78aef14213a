"""Space `augment`: more data without collecting it: random shifts, rotations, zoom and elastic distortions.

Scientific: `augment_translate` (a fraction of the image size), `augment_rotate` (degrees),
`augment_zoom` and `augment_elastic_alpha` (pixels; Simard et al. 2003 used 34 with sigma 4 for
their 0.7% MLP), with `augment_elastic_sigma` only when alpha is not 0; 0 is none for each.
Applied to training batches only, never to validation or test images.
Fixed: the network and the rest of the base config (the reference model).
"""

from __future__ import annotations

from typing import Any

from search.config import TrialConfig
from spaces._scope import only_when

ELASTIC_ALPHAS = [0.0, 16.0, 34.0]


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    changes: dict[str, Any] = {
        "augment_translate": trial.suggest_categorical("augment_translate", [0.0, 0.05, 0.1, 0.15]),
        "augment_rotate": trial.suggest_categorical("augment_rotate", [0.0, 5.0, 10.0, 15.0, 20.0]),
        "augment_zoom": trial.suggest_categorical("augment_zoom", [0.0, 0.05, 0.1, 0.15]),
        "augment_elastic_alpha": trial.suggest_categorical("augment_elastic_alpha", ELASTIC_ALPHAS),
    }
    if changes["augment_elastic_alpha"]:
        with only_when(trial, "augment_elastic_alpha", ELASTIC_ALPHAS[1:]):
            changes["augment_elastic_sigma"] = trial.suggest_categorical("augment_elastic_sigma", [4.0, 6.0])
    return base.replace(**changes)
