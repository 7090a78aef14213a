"""What a running search shows: one line per finished trial, and a bar with trials done, best so far and ETA."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.backends._asha import best_value, leaders, paused_at
from search.optuna_internals import state_counts
from search.record import TrialRecord

_BAR_WIDTH = 24


def format_params(params: dict) -> str:
    """`name=value` pairs, numbers to 4 significant digits, for one-line summaries."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Prints trial lines to `out`; on a terminal it also redraws a bar on stderr as epochs finish."""

    def __init__(self, n_trials: int, objective: str, out: TextIO = sys.stdout, timeout: float | None = None) -> None:
        """`timeout`: the seconds after which no new trial starts (the search's budget), if any."""
        self.n_trials, self.objective, self.out = n_trials, objective, out
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout else math.inf
        self.trained_here = 0
        self.tty = sys.stderr.isatty()
        self.status = ""

    def note(self, message: str) -> None:
        self._clear()
        print(message, file=self.out, flush=True)

    def epoch_finished(self, number: int, epoch: int, value: float) -> None:
        if self.tty:
            sys.stderr.write(f"\r{self.status}  trial {number} epoch {epoch}: {value:.4f}\033[K")
            sys.stderr.flush()

    def trial_finished(self, trial: FrozenTrial, study: optuna.Study) -> None:
        """The trial's line, then the bar from the study's counts (other workers' trials included)."""
        self.trained_here += 1
        record = TrialRecord.from_attrs(trial.user_attrs)
        value = f"{self.objective} {trial.values[0]:.4f}" if trial.values else record.fail_message
        if trial.state == TrialState.PRUNED:
            how = "paused (may be promoted)" if record.plan.pause else "pruned"
            value = f"{how}, last {self.objective} {_last(trial, record, self.objective):.4f}"
        if len(study.directions) > 1 and record.trainable_params is not None:  # what the front weighs it by
            value += f", {record.trainable_params:,} params"
            value += f", {record.latency_ms:.1f} ms" if record.latency_ms is not None else ""
        epochs = f"epochs {record.epochs_run or 0}"
        if record.first_epoch and record.first_epoch > 1:
            epochs = f"epochs {record.first_epoch}-{record.first_epoch + (record.epochs_run or 0) - 1}"
        if record.plan.continues is not None:
            epochs += f" (promoted from trial {record.plan.continues})"
        self.note(
            f"trial {trial.number:>3}  {trial.state.name:<8} {value}  {epochs}  "
            f"{record.seconds or 0:.1f}s  {format_params(trial.params)}"
        )
        self.status = self.bar(study)
        print(self.status, file=sys.stderr if self.tty else self.out, end="" if self.tty else "\n", flush=True)

    def bar(self, study: optuna.Study) -> str:
        now = state_counts(study)
        done = now["complete"] + now["pruned"]
        filled = min(_BAR_WIDTH, _BAR_WIDTH * done // max(1, self.n_trials))
        eta = format_seconds(self.eta(done))
        try:
            best = (
                f"front of {len(study.best_trials)} trials"
                if len(study.directions) > 1
                else f"best {study.best_value:.4f} (trial {study.best_trial.number})"
            )
        except ValueError:
            best = "no complete trial yet"
        best += _leader(study)
        return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{self.n_trials} trials  {best}  ETA {eta}"

    def eta(self, done: int) -> float:
        """Seconds left: what the remaining trials take at this worker's pace, or the budget's rest if sooner.

        The bar is drawn between trials, and past the budget no trial starts: then nothing is left.
        """
        now = time.monotonic()
        per_trial = (now - self.started) / max(1, self.trained_here)
        return min(per_trial * max(0, self.n_trials - done), max(0.0, self.deadline - now))

    def _clear(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")


def _leader(study: optuna.Study) -> str:
    """`, paused leader V (trial N at epoch E)` when a trial paused by asha beat every complete one, else ``.

    Under asha most trials pause at a rung; the best so far may be one of them, which the search
    finishes in its last stretch (search/backends/_asha.py).
    """
    if len(study.directions) > 1:
        return ""
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    ahead = leaders(study.get_trials(deepcopy=False), sign)
    if not ahead:
        return ""
    leader = ahead[0]
    return f", paused leader {sign * best_value(leader, sign):.4f} (trial {leader.number} at epoch {paused_at(leader)})"


def _last(trial: FrozenTrial, record: TrialRecord, objective: str) -> float:
    """The last epoch's value: as reported, or as recorded where the trial could report none (several objectives)."""
    values = trial.intermediate_values
    if values:
        return values[max(values)]
    curve = record.history.get(objective)
    return curve[-1] if curve else math.nan
