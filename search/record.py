"""What a trial is asked to do and what it leaves behind: the only module that knows the trials' user-attr keys.

A trial's user attrs hold three things. `TrialPlan`: what the backend asks of the trial before it
runs (set when it is enqueued). `TrialRecord`: what the finished trial leaves (its config, result,
who ran it). `FailReason`: why a failed trial failed. Each turns into user attrs with `to_attrs`
and back with `from_attrs`; a reader gets typed fields, never a bare key, and an attr a study of
an older version lacks reads as the field's default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_FAIL_KIND = "fail_kind"
_FAIL_REASON = "fail_reason"  # the sentence a person reads (rank, the trial lines, Keras Tuner's message)


class FailReason(str, Enum):
    """Why the driver failed a trial on purpose; the sentence itself goes with it (`to_attrs`)."""

    DIVERGED = "diverged"  # the loss became NaN or infinite
    KILLED = "killed"  # the trial's process died (a signal, the out-of-memory killer)
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM stopped the search while the trial ran
    SURPLUS = "surplus"  # other workers already covered the requested trials: never trained
    OTHER = "other"  # a reason recorded by a version that did not name its kind

    def to_attrs(self, message: str) -> dict[str, Any]:
        return {_FAIL_KIND: self.value, _FAIL_REASON: message}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> FailReason | None:
        """The reason a failed trial records, or None (not failed by the driver, or failed by Optuna)."""
        if _FAIL_KIND in attrs:
            return cls(attrs[_FAIL_KIND])
        message = attrs.get(_FAIL_REASON)
        if message is None:
            return None
        # Studies made before the kind was recorded: their sentences began alike, one per kind.
        return next((reason for reason, start in _LEGACY_STARTS.items() if message.startswith(start)), cls.OTHER)


_LEGACY_STARTS = {
    FailReason.SURPLUS: "surplus",
    FailReason.DIVERGED: "loss became NaN",
    FailReason.KILLED: "its process",
}


def _attrs_of(instance: Any) -> dict[str, Any]:
    """The fields that differ from their defaults, as user attrs of the same names."""
    return {
        f.name: getattr(instance, f.name)
        for f in dataclasses.fields(instance)
        if f.metadata.get("attr", True) and getattr(instance, f.name) != _default(f)
    }


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _from(cls: type, attrs: dict[str, Any], **extra: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("attr", True)}
    return cls(**{k: v for k, v in attrs.items() if k in names}, **extra)


@dataclass(frozen=True)
class TrialPlan:
    """What the backend asks a trial to do, beyond the params it samples; queued with the trial.

    The config itself comes from the space and the trial's params, in the trial's process.
    """

    epochs: int | None = None  # train up to this epoch (default: the config's epochs)
    continues: int | None = None  # the number of the trial whose training this one continues, from its weights
    keep_weights: bool = False  # leave the best epoch's weights for a trial that may continue this one
    # Set when the trial starts, in the process that runs it (search/weights.py):
    initial_epoch: int = 0  # continue the training of `continues` from this epoch ...
    initial_weights: str | None = None  # ... with the weights in this file
    save_weights: str | None = None  # save the best epoch's weights to this file (`keep_weights`)
    pause: bool = False  # stop at `epochs` paused: recorded as pruned there, continued later if promoted
    final: bool = False  # the budget's last stretch (asha): complete at `epochs`, even below the study's cap
    baseline: bool = False  # the study's reference-model trial
    prior: bool = False  # the space's best known config
    kt_trial_id: str | None = None  # Keras Tuner's id for the trial (its oracle's bookkeeping)
    kt_parent_id: str | None = None  # the Keras Tuner trial it continues (`continues` is its Optuna trial)

    def to_attrs(self) -> dict[str, Any]:
        return _attrs_of(self)

    def started_attrs(self) -> dict[str, Any]:
        """The fields set when the trial starts, defaults too: a retried trial's copies of its first try's go."""
        return {name: getattr(self, name) for name in ("initial_epoch", "initial_weights", "save_weights")}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialPlan:
        return _from(cls, attrs)


@dataclass(frozen=True)
class TrialRecord:
    """What a trial leaves in the storage: its config, how training went, who ran it, why it failed."""

    config: dict[str, Any] | None = None  # the complete TrialConfig, as a dict
    param_count: int | None = None
    trainable_params: int | None = None  # the `params` objective; recorded before training (size-aware pruning)
    latency_ms: float | None = None  # the `latency` objective (search/costs.py); recorded after the first epoch
    epochs_run: int | None = None
    first_epoch: int | None = None  # 1, or later for a trial continuing another's training
    best_epoch: int | None = None
    seconds: float | None = None  # training time, rounded to 10 ms
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch: loss, accuracy, val_*, rate
    backend: str | None = None
    seed: int | None = None
    dataset: str | None = None  # the dataset's checksum
    versions: dict[str, str] | None = None  # library_versions() of the process that trained
    worker: str | None = None  # "host:pid" of the process running the trial's loop
    model_not_kept: str | None = None  # why a complete trial among the best has no kept model (search/kept.py)
    weights_not_kept: str | None = None  # why a trial's continuation weights were not kept (search/weights.py)
    plan: TrialPlan = field(default_factory=TrialPlan, metadata={"attr": False})
    fail: FailReason | None = field(default=None, metadata={"attr": False})
    fail_message: str = field(default="", metadata={"attr": False})
    # What the trial's work returns to the loop, which tells Optuna (the trial's value, not a user attr):
    # the objective's best (a list beginning with it in a study of several objectives).
    value: float | list[float] | None = field(default=None, metadata={"attr": False})

    @property
    def baseline(self) -> bool:
        return self.plan.baseline

    @property
    def seconds_per_epoch(self) -> float | None:
        """What an epoch of the trial cost: training seconds over the epochs it trained (None if unknown).

        Building and compiling are in it, so it overstates a short stretch's epochs (by up to 2x at
        2 epochs), and asha's finish relies on that as its margin: the one timed epoch after the
        first, tried instead, understated a finish's epochs 1.5x and cut it (BENCHMARKS.md, "Planning
        the finish with an epoch's own time").
        """
        return self.seconds / self.epochs_run if self.seconds and self.epochs_run else None

    def to_attrs(self) -> dict[str, Any]:
        """The record's user attrs (the plan's are set when the trial is queued, so not here)."""
        return {**_attrs_of(self), **(self.fail.to_attrs(self.fail_message) if self.fail else {})}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        return _from(
            cls,
            attrs,
            plan=TrialPlan.from_attrs(attrs),
            fail=FailReason.from_attrs(attrs),
            fail_message=attrs.get(_FAIL_REASON, ""),
        )


# What a leaderboard row reads of each trial: everything but the per-epoch history and the versions.
ROW_KEYS = tuple(
    f.name
    for f in (*dataclasses.fields(TrialRecord), *dataclasses.fields(TrialPlan))
    if f.metadata.get("attr", True) and f.name not in ("history", "versions")
)
