"""Keras Tuner backends: the adapter over every space, each oracle on tiny real runs, resume, Hyperband's weights."""

from __future__ import annotations

import gc
import io
import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import drive
from optuna.trial import TrialState

from search.backends import _kt_internals as kt_internals
from search.backends import _kt_state as kt_state
from search.backends import get_backend
from search.backends._keras_tuner import kt_space
from search.backends._kt_adapter import KerasTunerTrial
from search.cli import main
from search.config import TrialConfig
from search.errors import UserError
from search.kept import kept_models
from search.objective import Objective
from search.progress import Progress
from search.record import TrialPlan
from search.storage import open_storage
from search.study import StudySpec, open_study, run_study
from search.trials import enqueue, run_trials
from search.weights import held_weights
from spaces import SPACES

# The oracle tests drive the study with ask/tell, which Optuna's heartbeat storage warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
TINY = {"space": "small", "epochs": 1, "subset": 500, "baseline": False}


@pytest.fixture(autouse=True, scope="module")
def _small_space(small: str) -> None:
    """The tiny runs' space (conftest.small_space) is known to the driver and the adapter for this module."""


def _spec(backend: str, **settings: object) -> StudySpec:
    return StudySpec(**{**TINY, "backend": backend, **settings})


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def _run(url: str, spec: StudySpec, n_trials: int, study: str = "s") -> optuna.Study:
    assert run_study(spec, study=study, storage=url, n_trials=n_trials, timeout=None) == 0
    return optuna.load_study(study_name=study, storage=url)


def _kt_state(study: optuna.Study) -> kt_state.State:
    """Keras Tuner's own record of the oracle and of each trial, as the study holds it."""
    state = kt_state.load(study, legacy=Path("no-such-folder"))
    assert state is not None, "the study holds no Keras Tuner state"
    return state


def _searched(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if "kt_trial_id" in t.user_attrs]


def _assert_recorded_alike(study: optuna.Study) -> None:
    """Each oracle trial is one complete Optuna trial with the oracle's values, curve and score."""
    complete = [t for t in _searched(study) if t.state == TrialState.COMPLETE]
    ids = [t.user_attrs["kt_trial_id"] for t in complete]
    assert len(ids) == len(set(ids)), f"a Keras Tuner trial was trained twice: {ids}"
    oracle, kt_trials = _kt_state(study)
    assert sorted(oracle["end_order"]) == sorted(ids) and not oracle["ongoing_trials"]
    for trial in complete:
        recorded = kt_trials[trial.user_attrs["kt_trial_id"]]
        values = {k: v for k, v in recorded["hyperparameters"]["values"].items() if not k.startswith("tuner/")}
        assert values == trial.params and trial.distributions.keys() == trial.params.keys()
        assert recorded["status"] == "COMPLETED" and recorded["score"] == pytest.approx(trial.value)
        assert len(trial.intermediate_values) == trial.user_attrs["epochs_run"]


@pytest.mark.parametrize("name", list(SPACES))
def test_adapter_gives_keras_tuner_each_parameter_with_range_scale_and_condition(name):
    base = TrialConfig()
    hp = kt_space(name, base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    samples = []
    for _ in range(150):
        trial = study.ask()
        samples.append((SPACES[name](trial, base), trial.params, trial.distributions))
        study.tell(trial, 0.0)
    distributions = {k: v for _, _, d in samples for k, v in d.items()}
    assert {param.name: _as_optuna(param) for param in hp.space} == distributions
    for config, params, _ in samples:
        # KT's conditions say exactly which parameters this trial has, and the adapter answers with KT's values.
        hp.values = dict(params)
        assert {param.name for param in hp.space if hp.is_active(param)} == params.keys()
        assert SPACES[name](KerasTunerTrial(hp), base) == config


def _as_optuna(param: object) -> optuna.distributions.BaseDistribution:
    kind = type(param).__name__
    if kind == "Choice":
        return optuna.distributions.CategoricalDistribution(param.values)
    log = param.sampling == "log"
    if kind == "Int":
        return optuna.distributions.IntDistribution(param.min_value, param.max_value, log=log, step=param.step or 1)
    return optuna.distributions.FloatDistribution(param.min_value, param.max_value, log=log, step=param.step)


def test_bayesian_oracle_on_a_tiny_real_run(tmp_path):
    study = _run(_url(tmp_path), _spec("kt-bayesian"), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["oracle_class"] == "BayesianOptimizationOracle"
    _assert_recorded_alike(study)
    assert not (tmp_path / ".kt").exists(), "the study holds the oracle's state: no folder beside it"


def _opened(tmp_path: Path, spec: StudySpec) -> tuple[object, optuna.Study]:
    """A backend and its study as `search run` opens them, without running trials."""
    backend = get_backend(spec.backend)(seed=0, pruner="none", epochs=1, study="s", spec=spec, storage=_url(tmp_path))
    return backend, open_study(open_storage(_url(tmp_path)), "s", spec, backend)


def _closeness(config: TrialConfig) -> float:
    """A made-up score with an optimum inside the learning rate's range, for the Gaussian process to model."""
    return 1.0 / (1.0 + abs(config.learning_rate - 0.003))


def test_bayesian_model_proposes_values_inside_the_space(tmp_path):
    spec = _spec("kt-bayesian", space="schedule")
    backend, study = _opened(tmp_path, spec)
    initial = 3 * len(kt_space("schedule", spec.base()).space)  # Keras Tuner's random start
    assert drive(backend, study, "schedule", _closeness, limit=initial + 1) == initial + 1
    for trial in study.trials[initial:]:  # the Gaussian process's proposals, taken as they are
        recorded = _kt_state(study)[1][trial.user_attrs["kt_trial_id"]]["hyperparameters"]["values"]
        assert recorded == trial.params
        assert all(d._contains(d.to_internal_repr(trial.params[k])) for k, d in trial.distributions.items())


def _twenty_points(trial, base: TrialConfig) -> TrialConfig:
    """A space of 5 x 4 = 20 points, small enough for Keras Tuner's random search to run out of new ones."""
    return base.replace(
        augment_rotate=trial.suggest_categorical("augment_rotate", [0.0, 5.0, 10.0, 15.0, 20.0]),
        augment_zoom=trial.suggest_categorical("augment_zoom", [0.0, 0.05, 0.1, 0.15]),
    )


def test_exhausted_space_ends_the_run_with_keras_tuners_reason(tmp_path, mnist, monkeypatch):
    monkeypatch.setitem(SPACES, "twenty", _twenty_points)
    spec = _spec("kt-random", space="twenty")
    backend, study = _opened(tmp_path, spec)
    done = drive(backend, study, "twenty", lambda config: config.augment_rotate / 100, limit=1_000)
    assert len({tuple(t.params.values()) for t in study.trials}) == done and 10 < done <= 20
    del backend
    gc.collect()
    # The next run reloads the exhausted oracle and ends at once, with its reason as the last line.
    backend, study = _opened(tmp_path, spec)
    lines = io.StringIO()
    run_trials(study, backend, Objective(spec, mnist, Progress(100, spec.objective, out=lines)), 100)
    last = lines.getvalue().splitlines()[-1]
    assert "triggered exit" in last and last.endswith("; stopping")
    assert len(study.trials) == done  # nothing more trained


def test_resume_continues_the_oracle_without_training_a_trial_twice(tmp_path):
    url, spec = _url(tmp_path), _spec("kt-random")
    _run(url, spec, n_trials=1)
    # Three runs that died at different points, each leaving the oracle with trial 0001 open.
    for leave in ("failed (Ctrl-C mid-trial)", "running (killed mid-trial)", "queued (killed before training)"):
        backend, study = _opened(tmp_path, spec)
        enqueue(study, backend.propose(study))
        if not leave.startswith("queued"):
            trial = study.ask()
            if leave.startswith("failed"):
                study.tell(trial, state=TrialState.FAIL)
        del backend  # lets go of the study's lock, as the end of its process would
        gc.collect()
    study = _run(url, spec, n_trials=3)
    assert [t.user_attrs["kt_trial_id"] for t in study.trials] == ["0000", "0001", "0001", "0001", "0002"]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    _assert_recorded_alike(study)
    oracle, _ = _kt_state(study)
    assert oracle["start_order"] == ["0000", "0001", "0002"] and not oracle["retry_queue"]


def test_a_study_reused_with_other_settings_or_by_two_processes_is_refused(tmp_path):
    url = _url(tmp_path)
    study = _run(url, _spec("kt-random"), n_trials=1)
    state = _kt_state(study)
    with pytest.raises(UserError, match="space='small', not 'dropout'"):
        run_study(_spec("kt-random", space="dropout"), study="s", storage=url, n_trials=2, timeout=None)
    assert _kt_state(study) == state
    with pytest.raises(UserError, match="cannot name a folder"):
        run_study(_spec("kt-random"), study="../s", storage=url, n_trials=1, timeout=None)
    with pytest.raises(UserError, match="runs in one process"):
        run_study(_spec("kt-random"), study="s", storage=url, n_trials=2, timeout=None, workers=2)
    # A second process on the study (here a second backend in this one, which holds the lock as a process would).
    first, _ = _opened(tmp_path, _spec("kt-random"))
    enqueue(study, first.propose(study))
    second, _ = _opened(tmp_path, _spec("kt-random"))
    with pytest.raises(UserError, match="another process is running the Keras Tuner search of study 's'"):
        second.propose(study)


def test_a_study_whose_state_an_older_version_kept_in_a_folder_moves_it_into_the_storage(tmp_path):
    url, spec, legacy = _url(tmp_path), _spec("kt-random"), tmp_path / ".kt" / "s"
    study = _run(url, spec, n_trials=1)
    kt_internals.write_folder(legacy, *_kt_state(study))  # as versions before kept it, and no state in the study
    with sqlite3.connect(tmp_path / "studies.db") as db:
        db.execute("DELETE FROM study_system_attributes WHERE key LIKE 'kt:%'")
    # Beside another database, the folder's search is not that study's.
    with pytest.raises(UserError, match="the study in this storage lacks"):
        run_study(spec, study="s", storage=f"sqlite:///{tmp_path / 'new.db'}", n_trials=2, timeout=None)
    study = _run(url, spec, n_trials=2)
    assert [t.user_attrs["kt_trial_id"] for t in study.trials] == ["0000", "0001"]
    _assert_recorded_alike(study)


@pytest.fixture(scope="module")
def hyperband(tmp_path_factory) -> tuple[str, optuna.Study]:
    """Baseline + Hyperband's first bracket at 3 epochs: three 1-epoch trials, then the best one promoted."""
    tmp = tmp_path_factory.mktemp("hyperband")
    url = _url(tmp)
    study = _run(url, _spec("kt-hyperband", epochs=3, subset=1000, baseline=True), n_trials=5, study="hb")
    return url, study


def test_hyperband_trains_each_trial_for_its_brackets_epochs(hyperband):
    _, study = hyperband
    assert study.user_attrs["oracle_class"] == "HyperbandOracle"
    baseline, *searched = study.trials
    assert "kt_trial_id" not in baseline.user_attrs and baseline.user_attrs["epochs_run"] == 3
    assert [t.user_attrs["epochs"] for t in searched] == [1, 1, 1, 3]
    assert [sorted(t.intermediate_values) for t in searched] == [[1], [1], [1], [2, 3]]
    _assert_recorded_alike(study)


def test_hyperband_promoted_trial_continues_from_its_parents_weights(hyperband):
    _, study = hyperband
    *first_round, promoted = _searched(study)
    parent = next(t for t in first_round if t.user_attrs["kt_trial_id"] == promoted.user_attrs["kt_parent_id"])
    assert parent.value == max(t.value for t in first_round)  # Hyperband promotes the round's best
    plan = TrialPlan.from_attrs(promoted.user_attrs)
    assert promoted.params == parent.params and (plan.continues, plan.initial_epoch) == (parent.number, 1)
    assert plan.initial_weights is not None, "the parent's weights were not found"
    # A fresh model's first epoch is the parent's own first epoch; a continued one starts where it ended.
    parent_loss, child_loss = parent.user_attrs["history"]["loss"][-1], promoted.user_attrs["history"]["loss"][0]
    assert child_loss < 0.8 * parent_loss, (parent_loss, child_loss)


def test_hyperband_keeps_no_weights_once_its_bracket_is_done(hyperband):
    url, study = hyperband
    assert held_weights(study) == []
    # The weights went to the study's model store (beside studies.db): only the kept models' files are left.
    store = Path(url.removeprefix("sqlite:///")).with_suffix(".artifacts") / "hb"
    assert {path.name for path in store.iterdir()} == {model.artifact_id for model in kept_models(study)}


def test_rank_lists_keras_tuner_trials_beside_an_optuna_study(hyperband, capsys):
    url, study = hyperband
    _run(url, _spec("random"), n_trials=1, study="optuna")
    assert main(["rank", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_study = {name: [r for r in rows if r["study"] == name] for name in ("hb", "optuna")}
    assert len(by_study["hb"]) == len(study.trials) and len(by_study["optuna"]) == 1
    assert by_study["hb"][0].keys() == by_study["optuna"][0].keys()
    assert {r["backend"] for r in by_study["hb"]} == {"kt-hyperband"}
