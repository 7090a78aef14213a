"""The search algorithms: `BACKENDS` maps a `--backend` name to a factory of a `Backend`.

A backend decides which hyperparameters the next trial gets; the driver (`search.study`) runs
the trial and records it. Optuna backends do it through the study's sampler and pruner; a backend
with choices of its own (asha's promotions, Keras Tuner's oracle) proposes them before each trial,
and the driver queues them in the study.
"""

from __future__ import annotations

from search.backends._base import Backend, BackendFactory, Proposal, Stop
from search.backends._keras_tuner import KT_BACKENDS
from search.backends._optuna import MULTI_OBJECTIVE_BACKENDS, MULTI_OBJECTIVE_PRUNERS, OPTUNA_BACKENDS, PRUNERS
from search.backends._size_aware import Peer, SizeAwarePruner
from search.errors import UserError

BACKENDS: dict[str, BackendFactory] = {**OPTUNA_BACKENDS, **KT_BACKENDS}

__all__ = [
    "BACKENDS",
    "MULTI_OBJECTIVE_BACKENDS",
    "MULTI_OBJECTIVE_PRUNERS",
    "PRUNERS",
    "Backend",
    "BackendFactory",
    "Peer",
    "Proposal",
    "SizeAwarePruner",
    "Stop",
    "get_backend",
]


def get_backend(name: str) -> BackendFactory:
    """The backend factory called `name`, or a UserError listing the known ones."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[name]
