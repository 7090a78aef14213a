"""What a trial's own work tells the loop while it runs: the `Report` it is given.

The work (search/objective.py `run_trial`, search/synthetic.py) knows no study. It calls
`report.record(record)` with what it learns early (its model's costs), so a killed trial keeps
it too, and `report.epoch(step, value)` after each epoch, which answers whether to stop there.
In the loop's process, `TrialReport` records each call in the study, shows it on the progress
line and asks the pruner; a forked trial's process sends each call there (search/forked.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import optuna

from search.backends import SizeAwarePruner
from search.progress import Progress
from search.record import TrialRecord


class Report(Protocol):
    def record(self, record: TrialRecord) -> None: ...

    def epoch(self, step: int, value: float) -> bool: ...


class TrialReport:
    """A running trial's reports, recorded and judged in the loop's process.

    `epochs`: the last epoch the trial trains to (after it, it is not pruned: its value stands);
    `prunable`: False for the baseline, the yardstick every study is ranked against; `pruner`:
    the backend's `epoch_pruner`, judging instead of Optuna's (None: the study's). A study of
    several objectives takes no `trial.report` (Optuna refuses one): its curve is its history,
    and only the driver's own `pruner` can stop it.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        progress: Progress,
        *,
        epochs: int,
        prunable: bool,
        pruner: SizeAwarePruner | None,
    ) -> None:
        self.trial, self.progress, self.epochs, self.prunable, self.pruner = trial, progress, epochs, prunable, pruner
        self.multi_objective = len(trial.study.directions) > 1
        self.peers = pruner.peers(trial.study, trial.number) if pruner is not None and prunable else []
        self.attrs: dict[str, Any] = {}  # what the trial recorded so far
        self.scores: list[float] = []
        self.pruned_at = 0  # the epoch after which the pruner stopped it; 0: not stopped
        self.taken_over = False  # another worker failed it as stale meanwhile: nothing more is recorded

    def serve(self, call: tuple[str, ...]) -> Any:
        """Answers a call a trial's process sent: ("record", record) or ("epoch", step, value)."""
        method, *args = call
        return getattr(self, method)(*args)

    def record(self, record: TrialRecord) -> None:
        attrs = record.to_attrs()
        self.attrs.update(attrs)
        try:
            for key, value in attrs.items():
                self.trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.taken_over = True

    def epoch(self, step: int, value: float) -> bool:
        self.scores.append(value)
        try:
            if not self.multi_objective and not self.taken_over:
                self.trial.report(value, step=step)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.taken_over = True
        if self.taken_over:
            return True  # its outcome is stored already; training on is wasted (search/trials.py `_tell`)
        self.progress.epoch_finished(self.trial.number, step, value)
        if self.prunable and step < self.epochs and self._should_prune():
            self.pruned_at = step
        return bool(self.pruned_at)

    def _should_prune(self) -> bool:
        if self.pruner is None:
            return not self.multi_objective and self.trial.should_prune()
        size = self.pruner.size(TrialRecord.from_attrs(self.attrs))
        return size is not None and self.pruner.should_prune(self.peers, size, self.scores)


class RemoteReport:
    """A `Report` in a forked trial's process: each call goes to the loop's `TrialReport.serve`, which answers it."""

    def __init__(self, ask: Any) -> None:
        self.ask = ask

    def record(self, record: TrialRecord) -> None:
        self.ask(("record", record))

    def epoch(self, step: int, value: float) -> bool:
        return self.ask(("epoch", step, value))
