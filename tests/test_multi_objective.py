"""Studies of several objectives (accuracy against size or latency) and their size-aware pruner.

The pruner's judgement and the front's readers are driven with trials made by `create_trial` in a
real SQLite study; one in-process search trains two tiny trials to show a real trial pruned.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import FRONT, made_up_front
from optuna.trial import TrialState

from search.backends import MULTI_OBJECTIVE_BACKENDS, SizeAwarePruner, get_backend
from search.backends._size_aware import Peer, best_so_far
from search.cli import main
from search.config import TrialConfig
from search.costs import RUNS, WARM_UP, latency_ms, trainable_params
from search.errors import UserError
from search.export import Budget, export_trial
from search.model import build_model
from search.record import TrialRecord
from search.report.study import pareto_front, write_study_report
from search.spec import StudySpec, objectives_of
from search.study import open_search, run_study
from spaces import SPACES

REFERENCE_PARAMS = 912_226  # the reference network's, every trial's in the schedule space


def test_an_objective_list_is_a_metric_then_costs():
    assert objectives_of("val_accuracy") == ("val_accuracy",)
    assert objectives_of("val_accuracy, params,latency") == ("val_accuracy", "params", "latency")
    spec = StudySpec(space="size", backend="tpe", objective="val_loss,latency")
    assert (spec.metric, spec.directions, spec.default_pruner) == ("val_loss", ["minimize", "minimize"], "size-aware")
    assert StudySpec(space="size", backend="tpe").default_pruner == "asha"
    for text, message in [
        ("val_accuracy,size", "unknown objective 'size'"),
        ("val_accuracy,params,params", "names params twice"),
        ("params,val_accuracy", "name one validation metric (val_accuracy or val_loss) first"),
        ("val_accuracy,val_loss", "name one validation metric"),
    ]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            objectives_of(text)


def _pruner(measure: str = "params") -> SizeAwarePruner:
    return SizeAwarePruner(measure=measure, metric="val_accuracy", sign=1.0)


def test_a_trial_is_pruned_only_below_the_median_of_at_least_three_trials_no_larger():
    pruner = _pruner()
    peers = [Peer(100, best_so_far([0.90, 0.95], 1.0)) for _ in range(2)] + [Peer(5_000, [0.99, 0.99])]
    assert not pruner.should_prune(peers, 1_000, [0.5]), "two trials no larger: too few to judge"
    peers.append(Peer(500, best_so_far([0.80, 0.97], 1.0)))
    assert pruner.should_prune(peers, 1_000, [0.5]), "below 0.90, 0.90, 0.80 at epoch 1"
    assert not pruner.should_prune(peers, 1_000, [0.9]), "at their median: it keeps up"
    assert not pruner.should_prune(peers, 400, [0.5]), "smaller than all but two: too few to judge"
    assert pruner.should_prune(peers, 1_000, [0.5, 0.94]), "epoch 2: below 0.95, 0.95, 0.97"
    assert not pruner.should_prune(peers, 1_000, [0.5, 0.94, 0.94]), "none of them reached epoch 3"
    assert not pruner.should_prune(peers, 1_000, [0.97, 0.5]), "its best so far counts, not its last epoch"


def test_for_a_loss_lower_is_better():
    pruner = SizeAwarePruner(measure="params", metric="val_loss", sign=-1.0)
    peers = [Peer(10, best_so_far([0.3], -1.0)) for _ in range(3)]
    assert pruner.should_prune(peers, 10, [0.5]) and not pruner.should_prune(peers, 10, [0.2])


def _finished(study: optuna.Study, state: TrialState, record: TrialRecord, values: list[float] | None = None) -> None:
    study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=record.to_attrs()))


def test_peers_are_finished_trials_with_a_size_and_a_curve(tmp_path: Path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])
    curve = {"val_accuracy": [0.9, 0.8]}
    _finished(study, TrialState.COMPLETE, TrialRecord(trainable_params=10, latency_ms=2.0, history=curve), [0.9, 10])
    _finished(study, TrialState.PRUNED, TrialRecord(trainable_params=20, history=curve))
    _finished(study, TrialState.PRUNED, TrialRecord(history=curve))  # killed before it recorded a size
    _finished(study, TrialState.FAIL, TrialRecord(trainable_params=5, history=curve))
    running = study.ask()
    assert _pruner().peers(study, running.number) == [Peer(10, [0.9, 0.9]), Peer(20, [0.9, 0.9])]
    assert _pruner("latency").peers(study, running.number) == [Peer(2.0, [0.9, 0.9])]


@pytest.mark.parametrize("backend", ["kt-random", "kt-hyperband"])
@pytest.mark.parametrize("objective", ["val_accuracy,params", "val_accuracy,latency"])
def test_keras_tuner_cannot_search_several_objectives(backend: str, objective: str, tmp_path: Path):
    spec = StudySpec(space="size", backend=backend, objective=objective, pruner=None)
    with pytest.raises(UserError, match="backends that can: tpe, random, nsgaii"):
        open_search(spec, f"sqlite:///{tmp_path / 's.db'}", "s", seed=0)


def test_pruners_that_need_reported_values_are_refused(tmp_path: Path):
    spec = StudySpec(space="size", backend="tpe", objective="val_accuracy,params", pruner="asha")
    with pytest.raises(UserError, match="pick size-aware or none"):
        open_search(spec, f"sqlite:///{tmp_path / 's.db'}", "s", seed=0)


def test_a_trial_behind_smaller_ones_is_pruned_with_its_curve_kept(tmp_path: Path):
    """Three made-up small trials at 99% from epoch 1 on, then the baseline (never pruned) and one real trial."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(
        space="schedule", backend="random", objective="val_accuracy,params", pruner=None, subset=300, epochs=2
    )
    study = open_search(spec, url, "s", seed=0).study
    assert study.user_attrs["pruner"] == "size-aware" and study.user_attrs["objective"] == "val_accuracy,params"
    small = TrialRecord(trainable_params=1_000, history={"val_accuracy": [0.99, 0.99]}, first_epoch=1)
    for _ in range(3):
        _finished(study, TrialState.COMPLETE, small, [0.99, 1_000])
    assert run_study(spec, study="s", storage=url, n_trials=5, timeout=None) == 0
    study = optuna.load_study(study_name="s", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    baseline, searched = (t for t in study.get_trials() if "config" in t.user_attrs)
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["baseline"]
    assert baseline.values == [max(baseline.user_attrs["history"]["val_accuracy"]), REFERENCE_PARAMS]
    assert searched.state == TrialState.PRUNED, "912,226 parameters and far below three trials of 1,000"
    assert searched.user_attrs["trainable_params"] == REFERENCE_PARAMS
    assert len(searched.user_attrs["history"]["val_accuracy"]) == searched.user_attrs["epochs_run"] == 1
    assert searched.intermediate_values == {}, "a multi-objective trial takes no report"


@pytest.fixture
def front(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'front.db'}"
    made_up_front(url, "front")
    return url


def test_rank_marks_the_front_and_lists_only_it(front: str, capsys: pytest.CaptureFixture):
    assert main(["rank", "--storage", front, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["trial"], r["pareto"]) for r in rows] == [("3", "True"), ("1", "True"), ("2", "False"), ("0", "True")]
    assert rows[1]["vs_baseline"] == "0.0" and rows[0]["trainable_params"] == "100000"
    assert main(["rank", "--storage", front, "--format", "csv", "--pareto"]) == 0
    assert [r["trial"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))] == ["3", "1", "0"]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(Budget(), 3), (Budget(max_params=99_999), 1), (Budget(max_params=4_999), 0), (Budget(max_params=1_000), 0)],
)
def test_export_picks_the_most_accurate_trial_within_the_budget(front: str, budget: Budget, expected: int):
    exported = export_trial(front, "front", budget=None if budget == Budget() else budget)
    assert exported.provenance["trial"] == expected
    assert exported.provenance["objective"] == "val_accuracy", "what a retrain is compared with"
    assert exported.provenance["trainable_params"] == FRONT[expected][1]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (Budget(max_params=999), "no complete trial of study 'front' is within --max-params 999"),
        (Budget(max_latency_ms=5.0), "study 'front' recorded no latency of its trials"),
    ],
)
def test_export_says_why_no_trial_fits(front: str, budget: Budget, message: str):
    with pytest.raises(UserError, match=message):
        export_trial(front, "front", budget=budget)
    with pytest.raises(UserError, match="--trial picks trial 2 whatever its cost"):
        export_trial(front, "front", 2, budget=budget)


def test_the_report_draws_the_front_on_a_log_axis(front: str, tmp_path: Path):
    page, *images = write_study_report(front, "front", tmp_path / "report", note=lambda line: None)
    assert [image.name for image in images][:2] == ["pareto_front.png", "history.png"]
    assert "4 on the Pareto front" not in page.read_text() and "3 on the Pareto front" in page.read_text()
    axes = pareto_front(optuna.load_study(study_name="front", storage=front), "val_accuracy").axes[0]
    assert axes.get_xscale() == "log" and axes.get_xlabel() == "trainable parameters (log scale)"
    grey, optimal, baseline = (collection.get_offsets().tolist() for collection in axes.collections)
    assert grey == [[8_000, 0.975]] and len(optimal) == 3 and baseline == [[5_000, 0.98]]


def test_trainable_params_leave_out_batch_norms_moving_statistics():
    model = build_model(TrialConfig(hidden_units=(8,), batchnorm="before_activation"))
    assert trainable_params(model) == model.count_params() - 2 * 8


def test_latency_is_the_median_of_timed_calls_on_1000_images_after_warm_up():
    class Model:
        """Records what it is asked to predict."""

        def __init__(self) -> None:
            self.batches: list[tuple[int, ...]] = []

        def predict_on_batch(self, batch: np.ndarray) -> None:
            self.batches.append(batch.shape)

    model = Model()
    assert latency_ms(model, np.zeros((300, 28, 28), np.uint8)) >= 0
    assert model.batches == [(1_000, 28, 28)] * (WARM_UP + RUNS), "a small validation split is repeated to 1,000"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # driven with ask/tell here
@pytest.mark.parametrize("backend_name", MULTI_OBJECTIVE_BACKENDS)
def test_every_multi_objective_backend_samples_a_front(backend_name: str, tmp_path: Path):
    """Past TPE's random start-up (10 trials), with made-up scores: accuracy grows with the first layer's width."""
    spec = StudySpec(space="size", backend=backend_name, objective="val_accuracy,params", pruner="size-aware")
    study = open_search(spec, f"sqlite:///{tmp_path / 's.db'}", "s", seed=0).study
    backend = get_backend(backend_name)(seed=0, pruner="size-aware", epochs=1, spec=spec, study="s")
    for _ in range(12):
        study.sampler = backend.make_sampler(len(study.get_trials(deepcopy=False)))
        trial = study.ask()
        units = SPACES["size"](trial, TrialConfig()).hidden_units
        study.tell(trial, [0.9 + min(units[0], 1024) / 20_480, sum(units)])
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 12
    assert study.best_trials and study.metric_names == ["val_accuracy", "params"]
