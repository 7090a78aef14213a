"""A space seen by Keras Tuner: Optuna-style suggestions mapped onto its `HyperParameters`, conditions included.

Duck-typed on purpose: the `HyperParameters` object comes from `search.backends._keras_tuner`, the
one module that imports keras_tuner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from search.config import TrialConfig
from spaces import Suggest
from spaces._catalog import Param, catalog


class KerasTunerTrial:
    """An Optuna-style trial over Keras Tuner's `HyperParameters` (`hp`), which `learn_space` filled.

    Each suggestion answers with the parameter's value in `hp`; `spaces._scope.only_when` finds
    `conditional_scope` and enters the parameter's condition through it, as it was registered.
    """

    def __init__(self, hp: Any) -> None:
        self.hp = hp

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return _register(self.hp, Param(name, "int", low, high, step, log))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return _register(self.hp, Param(name, "float", low, high, step, log))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return _register(self.hp, Param(name, "categorical", choices=tuple(choices)))

    def conditional_scope(self, parent: str, values: list[Any]) -> Any:
        return self.hp.conditional_scope(parent, values)


def learn_space(space: Suggest, base: TrialConfig, hp: Any) -> Any:
    """Registers every parameter of `space` (`spaces._catalog`) in `hp` (an empty `HyperParameters`), each
    under its conditions, and returns it."""
    for param in catalog(space, base):
        with contextlib.ExitStack() as scopes:
            for parent, values in param.conditions:
                scopes.enter_context(hp.conditional_scope(parent, list(values)))
            _register(hp, param)
    hp.values = {}
    return hp


def _register(hp: Any, param: Param) -> Any:
    """`param` in Keras Tuner's terms (its value there, once registered)."""
    if param.kind == "categorical":
        return hp.Choice(param.name, list(param.choices))
    sampling = "log" if param.log else "linear"
    if param.kind == "int":
        # Keras Tuner's log `step` is a factor; Optuna's log ints take every integer, which is KT's step None.
        step = None if param.log else param.step
        return hp.Int(param.name, int(param.low), int(param.high), step=step, sampling=sampling)
    return hp.Float(param.name, param.low, param.high, step=param.step, sampling=sampling)
