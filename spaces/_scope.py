"""Conditional parameters: `only_when` tells a backend that a parameter exists only for some parent values."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any


def only_when(trial: Any, parent: str, values: Iterable[Any]) -> contextlib.AbstractContextManager:
    """Parameters suggested inside exist only when `parent` takes one of `values`.

    Optuna needs no declaration (a parameter simply isn't suggested); Keras Tuner's adapter
    turns this into `HyperParameters.conditional_scope` so its oracles know the condition.
    """
    scope = getattr(trial, "conditional_scope", None)
    return scope(parent, list(values)) if scope else contextlib.nullcontext()
