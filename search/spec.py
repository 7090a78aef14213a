"""A study's identity and defaults: `StudySpec`, below the driver and the backends, which both read it."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from search.config import OBJECTIVES, TrialConfig
from search.data import MNIST
from search.errors import UserError

# A study's epoch cap, and so every trial's `epochs` (a cosine schedule spans it): long enough
# for augmentation to pay off (Simard et al. trained for hundreds), affordable because the pruner
# gives it only to the few best trials (BENCHMARKS.md, "Search efficiency"). The reference
# model's own 20 epochs (TrialConfig.epochs) are the note's, a different fact.
STUDY_EPOCHS = 100
DEFAULT_SPACE = "full"
DEFAULT_BACKEND = "tpe"
DEFAULT_OBJECTIVE = "val_accuracy"
# What a study can minimize beside its validation metric, each a cost of the model: `params`, its
# trainable parameters (known before training), and `latency`, milliseconds per 1,000 images at
# batch 1,000 on the machine that trained it (measured after its first epoch); search/costs.py measures both.
COSTS = {"params": "trainable parameters", "latency": "ms per 1,000 images"}
DEFAULT_DATASET = MNIST
# Successive halving that pauses trials at rungs and promotes them from their weights (search/backends/_asha.py):
# Optuna's own sent the first trial to the cap alone, and it took a 10-minute budget whole. One
# bracket, not Hyperband's several: TPE models only the trials of the current trial's Hyperband
# bracket, so with 3-5 brackets it sampled at random for most of a 60-minute study (BENCHMARKS.md).
DEFAULT_PRUNER = "asha"
# Optuna's pruners (and asha, which ranks reported values) need `trial.report`, which a multi-objective
# trial cannot take; the driver's own pruner judges a trial against trials no larger (search/backends/_size_aware.py).
DEFAULT_MULTI_PRUNER = "size-aware"
# Settings that define what a study's trials mean; a study name re-used with other values is refused.
IDENTITY = ("space", "backend", "objective", "pruner", "epochs", "subset", "dataset")
# What a study made before a setting existed holds without recording it: every study trained on MNIST.
IMPLIED = {"dataset": MNIST}


def default_study_name(space: str, backend: str) -> str:
    """The study `search run` writes to when no --study is given."""
    return f"{space}-{backend}"


def library_versions() -> dict[str, str]:
    """The versions that decide what a trial's numbers mean, recorded with every study, trial and retrain."""
    names = ("tensorflow", "keras", "keras-tuner", "optuna", "numpy")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


@dataclass(frozen=True)
class StudySpec:
    """What a study searches and how; stored as study user attrs so readers need only the storage."""

    space: str
    backend: str
    objective: str = DEFAULT_OBJECTIVE
    pruner: str | None = DEFAULT_PRUNER  # None: a resumed study's own, else the default
    epochs: int = STUDY_EPOCHS
    subset: int = 0  # train on the first `subset` training images (quick looks, tests); 0 = all 50,000
    dataset: str = DEFAULT_DATASET  # what it trains on, as search.data names it (mnist, fashion-mnist, npz:PATH)
    seed: int = 0
    baseline: bool = True  # a new study's trial 0 is the reference model, to measure the search against
    prior: bool = True  # ... and its next one the space's best known config (spaces.PRIORS), a head start
    command: str = ""

    def base(self) -> TrialConfig:
        """The config every trial starts from: the reference model, with this study's epochs and seed."""
        return TrialConfig(epochs=self.epochs, seed=self.seed)

    def reference(self) -> TrialConfig:
        """The baseline trial's config: the reference model as the note trains it, its epochs within the study's."""
        return TrialConfig(epochs=min(TrialConfig().epochs, self.epochs), seed=self.seed)

    @property
    def objectives(self) -> tuple[str, ...]:
        """What the study optimizes, in the order of its trials' values: the validation metric first."""
        return objectives_of(self.objective)

    @property
    def metric(self) -> str:
        """The validation metric: what training monitors, pruners judge and a single-objective study optimizes."""
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def direction(self) -> str:
        """The validation metric's direction (a single-objective study's only one)."""
        return "maximize" if OBJECTIVES[self.metric] == "max" else "minimize"

    @property
    def directions(self) -> list[str]:
        """One direction per objective: costs are minimized."""
        return [self.direction, *["minimize"] * (len(self.objectives) - 1)]

    @property
    def default_pruner(self) -> str:
        return DEFAULT_MULTI_PRUNER if self.multi_objective else DEFAULT_PRUNER

    def attrs(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "backend": self.backend,
            "objective": self.objective,
            "pruner": self.pruner,
            "epochs": self.epochs,
            "subset": self.subset,
            "dataset": self.dataset,
            "seed": self.seed,
            "command": self.command,
            "base_config": self.base().to_dict(),
            "versions": library_versions(),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudySpec:
        return cls(**identity(attrs), seed=attrs["seed"], command=attrs["command"], baseline=False, prior=False)


def objectives_of(text: str) -> tuple[str, ...]:
    """The objectives `--objective` names (comma-separated): one validation metric, then costs; or a UserError."""
    names = tuple(name.strip() for name in text.split(","))
    known = (*OBJECTIVES, *COSTS)
    for name in names:
        if name not in known:
            raise UserError(f"unknown objective '{name}'; known objectives: {', '.join(known)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"--objective {text} names {', '.join(repeated)} twice; name each objective once")
    if names[0] not in OBJECTIVES or any(name in OBJECTIVES for name in names[1:]):
        raise UserError(
            f"--objective {text}: name one validation metric ({' or '.join(OBJECTIVES)}) first, then any of "
            f"{', '.join(COSTS)}, e.g. val_accuracy,params"
        )
    return names


def metric_of(objective: str | None) -> str | None:
    """The validation metric of a study's recorded `objective` (its first, where it names several)."""
    return objective.partition(",")[0] if objective else None


def identity(attrs: dict[str, Any]) -> dict[str, Any]:
    """The identity a study's user attrs record (None where one is missing), with what older studies imply."""
    return {key: attrs.get(key, IMPLIED.get(key)) for key in IDENTITY}
