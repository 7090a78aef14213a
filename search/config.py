"""The one config schema: `TrialConfig`, its defaults (the reference model), validation, dict and YAML files."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from search.errors import UserError

ACTIVATIONS = ("relu", "elu", "gelu", "selu", "swish", "tanh")
BATCHNORM_PLACEMENTS = ("none", "before_activation", "after_activation")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam")
LR_SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")
# The validation metrics a study can optimize, and which way is better.
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
# The keys that turn augmentation on (augment_elastic_sigma only shapes it): it moves pixels, so images only.
AUGMENTATION = ("augment_translate", "augment_rotate", "augment_zoom", "augment_elastic_alpha")


def _option(default: Any, doc: str, **bounds: Any) -> Any:
    """A config field with its documentation and its allowed values (`choices` or `low`/`high`)."""
    return field(default=default, metadata={"doc": doc, **bounds})


@dataclass(frozen=True)
class TrialConfig:
    """Everything that decides how one MLP is built and trained; the defaults are the note's reference model."""

    hidden_units: tuple[int, ...] = _option(
        (512, 512, 256, 256, 128, 128, 8),
        "units of each hidden Dense layer, input side first; the note's reference network",
        low=1,
        high=8192,
    )
    activation: str = _option("relu", "activation of every hidden layer", choices=ACTIVATIONS)
    input_dropout: float = _option(
        0.0, "rate of a Dropout on the flattened pixels, before the first hidden Dense", low=0.0, high=0.9
    )
    dropout: float = _option(
        0.0,
        "rate of a Dropout before every hidden Dense after the first (the note: dropout goes before the layer)",
        low=0.0,
        high=0.9,
    )
    max_norm: float = _option(
        0.0,
        "max L2 norm of each hidden unit's incoming weights (Keras MaxNorm, axis 0); 0 = no constraint",
        low=0.0,
        high=100.0,
    )
    batchnorm: str = _option(
        "none",
        "BatchNormalization in every hidden layer: none, or before/after its activation",
        choices=BATCHNORM_PLACEMENTS,
    )
    l2: float = _option(0.0, "L2 penalty factor on every Dense kernel (added to the loss)", low=0.0, high=1.0)
    augment_translate: float = _option(
        0.0, "random shift of training images, as a fraction of height/width (0 = none)", low=0.0, high=0.3
    )
    augment_rotate: float = _option(
        0.0, "random rotation of training images, in degrees either way (0 = none)", low=0.0, high=45.0
    )
    augment_zoom: float = _option(
        0.0, "random zoom of training images in or out, as a fraction (0 = none)", low=0.0, high=0.3
    )
    augment_elastic_alpha: float = _option(
        0.0,
        "elastic distortion of training images (Simard 2003): scale in pixels of the smoothed displacement "
        "field; no pixel moves further (0 = none)",
        low=0.0,
        high=100.0,
    )
    augment_elastic_sigma: float = _option(
        4.0, "elastic distortion: width in pixels of the Gaussian that smooths the displacements", low=0.5, high=20.0
    )
    optimizer: str = _option("adam", "optimizer (Keras defaults apart from the fields below)", choices=OPTIMIZERS)
    learning_rate: float = _option(0.001, "initial learning rate", low=1e-6, high=10.0)
    momentum: float = _option(
        0.9, "momentum of sgd (Nesterov off) and rmsprop; ignored by the others", low=0.0, high=0.999
    )
    weight_decay: float = _option(0.004, "decoupled weight decay of adamw; ignored by the others", low=0.0, high=1.0)
    lr_schedule: str = _option("constant", "learning-rate decay, formulas in docs/config.md", choices=LR_SCHEDULES)
    lr_decay_factor: float = _option(
        0.5,
        "step/exponential: multiply the rate by this every lr_decay_epochs; plateau: on each plateau",
        low=0.01,
        high=0.99,
    )
    lr_decay_epochs: int = _option(5, "step/exponential: the decay period in epochs", low=1, high=1000)
    lr_patience: int = _option(2, "plateau: epochs without a lower val_loss before the rate is cut", low=1, high=1000)
    batch_size: int = _option(100, "images per training step", low=1, high=60000)
    epochs: int = _option(20, "maximum training epochs", low=1, high=1000)
    early_stopping_patience: int = _option(
        0, "stop after this many epochs without a better val_accuracy; 0 = never stop early", low=0, high=1000
    )
    seed: int = _option(
        0, "seeds Python, NumPy and TensorFlow: weights, shuffling, dropout, augmentation", low=0, high=2**31 - 1
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f, getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        """Every field in schema order, as plain YAML/JSON-safe values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, complete: bool = False) -> TrialConfig:
        """Build a config from plain values, rejecting unknown keys; `complete` also requires every key."""
        if not isinstance(values, dict):
            raise UserError(f"a config must be a mapping of keys to values, not {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown config key '{unknown[0]}'; known keys: {', '.join(known)}")
        missing = [k for k in known if k not in values]
        if complete and missing:
            raise UserError(f"config key '{missing[0]}' is missing; a complete config lists every key")
        return cls(**values)

    def augmentation(self) -> list[str]:
        """The augmentation keys this config turns on (none: its model sees every image as it is)."""
        return [key for key in AUGMENTATION if getattr(self, key)]

    def replace(self, **changes: Any) -> TrialConfig:
        """A copy with some fields changed, validated like any other config."""
        return dataclasses.replace(self, **changes)


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """The field's value in its canonical type, or a UserError naming the key and what it accepts."""
    default = f.default
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise UserError(f"config key '{f.name}' must be a non-empty list of integers, got {value!r}")
        return tuple(_in_range(f, _typed(f, v, int)) for v in value)
    return _in_range(f, _typed(f, value, type(default)))


def _typed(f: dataclasses.Field, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"config key '{f.name}' must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):
        raise UserError(f"config key '{f.name}' must be a finite number, got {value!r}")
    return value


def _in_range(f: dataclasses.Field, value: Any) -> Any:
    choices, low, high = (f.metadata.get(k) for k in ("choices", "low", "high"))
    if choices is not None and value not in choices:
        raise UserError(f"config key '{f.name}' is {value!r}; allowed: {', '.join(choices)}")
    if low is not None and not low <= value <= high:
        raise UserError(f"config key '{f.name}' is {value!r}; allowed range: {low} to {high}")
    return value


def schema_rows() -> list[dict[str, str]]:
    """One row per key (name, type, allowed values, default, meaning) for docs/config.md and `search schema`."""
    rows = []
    for f in dataclasses.fields(TrialConfig):
        choices, low, high = (f.metadata.get(k) for k in ("choices", "low", "high"))
        allowed = " / ".join(choices) if choices else f"{low} to {high}"
        kind = "list of int" if isinstance(f.default, tuple) else type(f.default).__name__
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        rows.append(
            {"key": f.name, "type": kind, "allowed": allowed, "default": str(default), "meaning": f.metadata["doc"]}
        )
    return rows
