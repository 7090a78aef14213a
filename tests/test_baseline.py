"""The baseline trial: the reference model is trial 0 of a new study only, and `rank` measures against it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import optuna
import pytest
from conftest import TINY_STUDY, TINY_STUDY_RUN, TINY_STUDY_TRIALS, search_cli

from search.backends import get_backend
from search.cli import main
from search.config import TrialConfig
from search.storage import open_storage
from search.study import StudySpec, open_study
from spaces import params_for, prior


@pytest.fixture(scope="module")
def storage(tiny_study: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database: study `plain` (--no-baseline, the command line run in-process) and a copy of tiny_study."""
    url = f"sqlite:///{tmp_path_factory.mktemp('baseline') / 'studies.db'}"
    assert main([*TINY_STUDY_RUN, "--trials", "1", "--study", "plain", "--storage", url, "--no-baseline"]) == 0
    optuna.copy_study(from_study_name=TINY_STUDY, from_storage=tiny_study, to_storage=url)
    return url


def test_baseline_is_trial_0_of_a_new_study_and_not_of_a_resumed_one(tiny_study: str) -> None:
    # tiny_study ran one trial, then was resumed to three: the resume queued no second baseline.
    trials = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study).get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(TINY_STUDY_TRIALS))
    assert [t.user_attrs.get("baseline", False) for t in trials] == [True] + [False] * (TINY_STUDY_TRIALS - 1)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_baseline_is_the_reference_model_with_the_studys_seed(tiny_study: str) -> None:
    baseline = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study).trials[0]
    reference = StudySpec(space="size", backend="tpe", epochs=2, subset=500, seed=3).reference()
    assert (reference.epochs, reference.seed) == (2, 3)  # the note's 20 epochs, cut to the study's 2
    assert baseline.user_attrs["config"] == reference.to_dict()
    assert baseline.params == {}  # not a draw of the space: `full`'s network cannot express it


def test_the_baseline_trains_the_notes_epochs_not_the_studys_cap() -> None:
    # A 100-epoch study's baseline is the reference model as the note trains it: 20 epochs, not 100.
    spec = StudySpec(space="full", backend="tpe", epochs=100, seed=1)
    assert spec.reference().epochs == TrialConfig().epochs == 20
    assert spec.reference().replace(epochs=100) == spec.base()


def test_no_baseline_flag_gives_a_study_without_one(storage: str) -> None:
    study = optuna.load_study(study_name="plain", storage=storage)
    assert len(study.trials) == 1
    assert not any(t.user_attrs.get("baseline") for t in study.trials)
    assert "--no-baseline" in study.user_attrs["command"]


def test_rank_shows_each_trial_against_its_studys_baseline(storage: str) -> None:
    result = search_cli("rank", "--storage", storage, "--format", "csv")  # the real command, once
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    ours = {int(row["trial"]): row for row in rows if row["study"] == TINY_STUDY}
    baseline = float(ours[0]["value"])
    assert ours[0]["baseline"] == "True" and float(ours[0]["vs_baseline"]) == 0.0
    for number in range(1, TINY_STUDY_TRIALS):
        assert float(ours[number]["vs_baseline"]) == pytest.approx(float(ours[number]["value"]) - baseline)
    # A study without a baseline has nothing to measure against.
    assert [row["vs_baseline"] for row in rows if row["study"] == "plain"] == [""]


def test_a_new_full_study_queues_the_baseline_then_the_spaces_best_known_config(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    spec = StudySpec(space="full", backend="tpe", epochs=7, seed=2)
    study = open_study(storage, "f", spec, get_backend("tpe")(seed=2, pruner="hyperband", epochs=7))
    queued = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs for t in queued] == [{"baseline": True}, {"prior": True}]
    assert queued[0].system_attrs["fixed_params"] == {}
    known = prior("full", spec.base(), spec.dataset)
    assert (known.epochs, known.seed) == (7, 2)
    assert queued[1].system_attrs["fixed_params"] == params_for("full", known)
    without = StudySpec(space="full", backend="tpe", prior=False)
    plain = open_study(storage, "g", without, get_backend("tpe")(seed=0, pruner="hyperband", epochs=20))
    assert [t.user_attrs for t in plain.get_trials(deepcopy=False)] == [{"baseline": True}]
