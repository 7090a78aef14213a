"""What a space searches, found by running it: each parameter's range or choices, and when it exists.

A space is code, so its parameters are known only by running it, and one run reaches only the
branches its values take (the units of layer 5 are suggested only when n_layers >= 5). So the
space runs again with each value of each int or categorical parameter forced in turn; where a
forced value reaches new parameters, their values are forced too, on top of it, until no run
reaches anything new. `search spaces` prints the result; Keras Tuner's adapter registers it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from search.config import TrialConfig


@dataclass(frozen=True)
class Param:
    """One parameter of a space, as its suggestion declares it, with the conditions it was first reached under."""

    name: str
    kind: str  # "int", "float" or "categorical"
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    conditions: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (parent, the values it exists for), outermost first

    def discrete(self) -> Collection[Any]:
        """Every value to force it to while exploring (none for a float)."""
        if self.kind == "int":
            return range(int(self.low), int(self.high) + 1, int(self.step or 1))
        return self.choices

    def describe(self) -> str:
        """The range or choices in words, then the condition: `int 1 to 8`, `one of a, b; when n_layers in 3-8`."""
        if self.kind == "categorical":
            shown = "one of " + ", ".join(map(str, self.choices))
        else:
            step = f", step {self.step:g}" if self.step not in (None, 1) else ""
            shown = f"{self.kind} {self.low:g} to {self.high:g}{', log scale' if self.log else ''}{step}"
        when = " and ".join(f"{parent} in {_values(values)}" for parent, values in self.conditions)
        return shown + (f"; only when {when}" if when else "")


def catalog(space: Callable[[Any, TrialConfig], TrialConfig], base: TrialConfig) -> list[Param]:
    """Every parameter of `space` (module docstring), in the order first reached."""
    found: dict[str, Param] = {}

    def run(forced: dict[str, Any]) -> dict[str, Collection[Any]]:
        trial = _Recorder(found, forced)
        space(trial, base)
        return trial.reached

    def explore(forced: dict[str, Any], discrete: dict[str, Collection[Any]]) -> None:
        for name, values in discrete.items():
            for value in values:
                assignment, known = {**forced, name: value}, set(found)
                new = {other: choices for other, choices in run(assignment).items() if other not in known}
                if new:
                    explore(assignment, new)

    explore({}, run({}))
    return list(found.values())


def config_at(
    space: Callable[[Any, TrialConfig], TrialConfig], base: TrialConfig, values: dict[str, Any]
) -> TrialConfig:
    """The config `space` gives for these parameter values; a parameter not among them takes the first of its range."""
    return space(_Recorder({}, values), base)


class _Recorder:
    """An Optuna-style trial that records each suggestion in `found` and answers with the forced value, else the
    first of its range (as Keras Tuner's defaults do)."""

    def __init__(self, found: dict[str, Param], forced: dict[str, Any]) -> None:
        self.found, self.forced = found, forced
        self.scopes: list[tuple[str, tuple[Any, ...]]] = []
        self.reached: dict[str, Collection[Any]] = {}  # the discrete parameters this run reached

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._answer(Param(name, "int", low, high, step, log))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._answer(Param(name, "float", low, high, step, log))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._answer(Param(name, "categorical", choices=tuple(choices)))

    @contextlib.contextmanager
    def conditional_scope(self, parent: str, values: Collection[Any]) -> Iterator[None]:
        self.scopes.append((parent, tuple(values)))
        try:
            yield
        finally:
            self.scopes.pop()

    def _answer(self, param: Param) -> Any:
        param = self.found.setdefault(param.name, dataclasses.replace(param, conditions=tuple(self.scopes)))
        if param.kind != "float":
            self.reached[param.name] = param.discrete()
        return self.forced.get(param.name, param.choices[0] if param.kind == "categorical" else param.low)


def _values(values: tuple[Any, ...]) -> str:
    """`3-8` for a run of consecutive ints, else the values listed."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and len(values) > 1 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return "{" + ", ".join(map(str, values)) + "}"
