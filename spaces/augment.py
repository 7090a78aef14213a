"""Space `augment`: more data without collecting it: random shifts, rotations and zoom of training images.

Scientific: `augment_translate` (none = 0, 0.05, 0.1, 0.15 of the image size),
`augment_rotate` (none = 0, 5, 10, 15, 20 degrees) and `augment_zoom` (none = 0, 0.05, 0.1, 0.15).
Applied to training batches only, never to validation or test images.
Fixed: the network and the rest of the base config (the reference model).
"""

from __future__ import annotations

from typing import Any

from search.config import TrialConfig


def suggest(trial: Any, base: TrialConfig) -> TrialConfig:
    return base.replace(
        augment_translate=trial.suggest_categorical("augment_translate", [0.0, 0.05, 0.1, 0.15]),
        augment_rotate=trial.suggest_categorical("augment_rotate", [0.0, 5.0, 10.0, 15.0, 20.0]),
        augment_zoom=trial.suggest_categorical("augment_zoom", [0.0, 0.05, 0.1, 0.15]),
    )
