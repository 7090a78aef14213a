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
from search.record import FailReason, TrialPlan, TrialRecord
from search.storage import open_storage
from search.trials import MAX_FAILURES_IN_A_ROW, Prepared, counts, run_trials

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(tmp_path: Path) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    return optuna.create_study(study_name="t", storage=open_storage(url), direction="maximize")


def _backend(pruner: str = "none"):
    return get_backend("random")(seed=0, pruner=pruner, epochs=synthetic.EPOCHS)


def test_the_loop_finishes_exactly_the_trials_asked_for_with_every_epoch_reported(tmp_path: Path) -> None:
    study, out = _study(tmp_path), io.StringIO()
    run_trials(study, _backend(), synthetic.SyntheticObjective(Progress(5, "val_accuracy", out=out)), 5)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert all(sorted(t.intermediate_values) == list(range(1, synthetic.EPOCHS + 1)) for t in trials)
    assert counts(study)["complete"] == 5 and counts(study)["running"] == 0
    assert out.getvalue().count("COMPLETE") == 5, out.getvalue()


def test_a_trial_beyond_the_finished_ones_asked_for_is_refused_as_surplus_unrun(tmp_path: Path) -> None:
    study, backend = _study(tmp_path), _backend()
    study.tell(study.ask(), 0.5)

    def another_worker_finishes_one(study: optuna.Study, seconds_left: float, budget: float) -> None:
        # After this loop's check before the ask (1 of 2 finished), before its ask: the race the second check is for.
        study.tell(study.ask(), 0.9)

    backend.propose = another_worker_finishes_one
    run_trials(study, backend, synthetic.SyntheticObjective(Progress(2, "x", out=io.StringIO())), 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    refused = study.trials[2]
    assert refused.params == {} and refused.intermediate_values == {}  # never sampled, never trained
    assert FailReason.from_attrs(refused.user_attrs) == FailReason.SURPLUS
    assert refused.user_attrs["fail_reason"] == "surplus: other workers already cover the requested trials"


class _AlwaysDiverges(synthetic.SyntheticObjective):
    def prepare(self, trial: optuna.Trial, plan: TrialPlan) -> Prepared:
        diverged = TrialRecord(fail=FailReason.DIVERGED, fail_message="loss became NaN at epoch 1")
        return Prepared(TrialRecord(), synthetic.EPOCHS, lambda report: diverged)


def test_a_run_of_failures_stops_the_loop_with_the_reason(tmp_path: Path) -> None:
    study, out = _study(tmp_path), io.StringIO()
    run_trials(study, _backend(), _AlwaysDiverges(Progress(100, "val_accuracy", out=out)), 100)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * MAX_FAILURES_IN_A_ROW
    assert all(t.user_attrs["fail_reason"] == "loss became NaN at epoch 1" for t in trials)
    assert f"the last {MAX_FAILURES_IN_A_ROW} trials all failed" in out.getvalue()


def test_the_pruner_stops_poor_made_up_curves(tmp_path: Path) -> None:
    study = _study(tmp_path)
    run_trials(study, _backend("median"), synthetic.SyntheticObjective(Progress(30, "x", out=io.StringIO())), 30)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 30
    assert TrialState.PRUNED in states
