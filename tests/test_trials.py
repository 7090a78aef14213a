"""The trial loop alone (search/trials.py), with `search.synthetic`'s made-up trials: no TensorFlow."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import synthetic
from search.backends import get_backend
from search.progress import Progress
from search.storage import open_storage
from search.trials import MAX_FAILURES_IN_A_ROW, SurplusTrial, TrialFailed, begin_trial, counts, run_trials

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(tmp_path: Path) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    return optuna.create_study(study_name="t", storage=open_storage(url), direction="maximize")


def _backend(pruner: str = "none"):
    return get_backend("random")(seed=0, pruner=pruner, epochs=synthetic.EPOCHS)


def test_the_loop_finishes_exactly_the_trials_asked_for_with_every_epoch_reported(tmp_path: Path) -> None:
    study, out = _study(tmp_path), io.StringIO()
    run_trials(study, _backend(), synthetic.SyntheticObjective(5, Progress(5, "val_accuracy", out=out)), 5)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert all(sorted(t.intermediate_values) == list(range(1, synthetic.EPOCHS + 1)) for t in trials)
    assert counts(study)["complete"] == 5 and counts(study)["running"] == 0
    assert out.getvalue().count("COMPLETE") == 5, out.getvalue()


def test_a_trial_beyond_the_finished_ones_asked_for_is_refused_as_surplus(tmp_path: Path) -> None:
    study = _study(tmp_path)
    runner = synthetic.SyntheticObjective(2, Progress(2, "val_accuracy", out=io.StringIO()))
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    trial = study.ask()
    with pytest.raises(SurplusTrial):
        begin_trial(runner, trial)
    assert runner.last_number == trial.number
    assert study.trials[-1].user_attrs["fail_reason"].startswith("surplus")


class _AlwaysFails(synthetic.SyntheticObjective):
    def __call__(self, trial: optuna.Trial) -> float:
        begin_trial(self, trial)
        raise TrialFailed("made to fail")


def test_a_run_of_failures_stops_the_loop_with_the_reason(tmp_path: Path) -> None:
    study, out = _study(tmp_path), io.StringIO()
    run_trials(study, _backend(), _AlwaysFails(100, Progress(100, "val_accuracy", out=out)), 100)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL] * MAX_FAILURES_IN_A_ROW
    assert f"the last {MAX_FAILURES_IN_A_ROW} trials all failed" in out.getvalue()


def test_the_pruner_stops_poor_made_up_curves(tmp_path: Path) -> None:
    study = _study(tmp_path)
    run_trials(study, _backend("median"), synthetic.SyntheticObjective(30, Progress(30, "x", out=io.StringIO())), 30)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 30
    assert TrialState.PRUNED in states
