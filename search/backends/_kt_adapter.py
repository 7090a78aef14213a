"""A space seen by Keras Tuner: Optuna-style suggestions mapped onto its `HyperParameters`, conditions included.

Duck-typed on purpose: the `HyperParameters` object comes from `search.backends._keras_tuner`, the
one module that imports keras_tuner.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from search.config import TrialConfig
from spaces import Suggest


class KerasTunerTrial:
    """An Optuna-style trial over Keras Tuner's `HyperParameters` (`hp`).

    Each suggestion registers the parameter in `hp` (range, step, log sampling, and the conditions of
    the enclosing `conditional_scope`) and answers with its value there. `spaces._scope.only_when`
    finds `conditional_scope` and declares each conditional parameter's parent through it.
    """

    def __init__(self, hp: Any) -> None:
        self.hp = hp
        self.discrete: dict[str, Collection] = {}  # every value of each int or categorical parameter seen

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.discrete[name] = range(low, high + 1, step)
        # Keras Tuner's log `step` is a factor; Optuna's log ints take every integer, which is KT's step None.
        return self.hp.Int(name, low, high, step=None if log else step, sampling="log" if log else "linear")

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear")

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.discrete[name] = list(choices)
        return self.hp.Choice(name, list(choices))

    def conditional_scope(self, parent: str, values: list[Any]) -> Any:
        return self.hp.conditional_scope(parent, values)


def learn_space(space: Suggest, base: TrialConfig, hp: Any) -> Any:
    """Registers every parameter of `space` in `hp` (an empty `HyperParameters`) and returns it.

    One run of a space reaches only the branches its values take (the units of layer 5 are
    suggested only when n_layers >= 5), so the space runs again with each value of each int or
    categorical parameter forced in turn; where a forced value reaches new parameters, their
    values are forced too, on top of it, until no run reaches anything new.
    """
    _explore(space, base, hp, {}, _run(space, base, hp, {}))
    hp.values = {}
    return hp


def _explore(space: Suggest, base: TrialConfig, hp: Any, forced: dict[str, Any], discrete: dict) -> None:
    for name, values in discrete.items():
        for value in values:
            assignment = {**forced, name: value}
            known = {param.name for param in hp.space}
            reached = _run(space, base, hp, assignment)
            new = {other: choices for other, choices in reached.items() if other not in known}
            if new:
                _explore(space, base, hp, assignment, new)


def _run(space: Suggest, base: TrialConfig, hp: Any, forced: dict[str, Any]) -> dict[str, Collection]:
    """One run of the space with `forced` values (defaults elsewhere); the discrete parameters it reached."""
    hp.values = {**{param.name: param.default for param in hp.space}, **forced}
    trial = KerasTunerTrial(hp)
    space(trial, base)
    return trial.discrete
