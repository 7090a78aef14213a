"""The baseline trial: the reference model is trial 0 of a new study only, and `rank` measures against it."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.backends import get_backend
from search.storage import open_storage
from search.study import StudySpec, open_study
from spaces import params_for, prior

REPO = Path(__file__).resolve().parents[1]
RUN = ("run", "--space", "size", "--epochs", "1", "--subset", "300", "--seed", "3")


def _search(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database: study `s` run for one trial then resumed to two, study `plain` run with --no-baseline."""
    url = f"sqlite:///{tmp_path_factory.mktemp('baseline') / 'studies.db'}"
    _search(*RUN, "--trials", "1", "--study", "s", "--storage", url)
    _search(*RUN, "--trials", "2", "--study", "s", "--storage", url)
    _search(*RUN, "--trials", "1", "--study", "plain", "--storage", url, "--no-baseline")
    return url


def test_baseline_is_trial_0_of_a_new_study_and_not_of_a_resumed_one(storage: str) -> None:
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1]
    assert [t.user_attrs.get("baseline", False) for t in trials] == [True, False]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_baseline_is_the_reference_model_with_the_studys_epochs_and_seed(storage: str) -> None:
    baseline = optuna.load_study(study_name="s", storage=storage).trials[0]
    base = StudySpec(space="size", backend="tpe", epochs=1, subset=300, seed=3).base()
    assert (base.epochs, base.seed) == (1, 3)
    assert baseline.user_attrs["config"] == base.to_dict()
    assert baseline.params == params_for("size", base)


def test_no_baseline_flag_gives_a_study_without_one(storage: str) -> None:
    study = optuna.load_study(study_name="plain", storage=storage)
    assert len(study.trials) == 1
    assert not any(t.user_attrs.get("baseline") for t in study.trials)
    assert "--no-baseline" in study.user_attrs["command"]


def test_rank_shows_each_trial_against_its_studys_baseline(storage: str) -> None:
    rows = list(csv.DictReader(io.StringIO(_search("rank", "--storage", storage, "--format", "csv"))))
    ours = {int(row["trial"]): row for row in rows if row["study"] == "s"}
    baseline = float(ours[0]["value"])
    assert ours[0]["baseline"] == "True" and float(ours[0]["vs_baseline"]) == 0.0
    assert float(ours[1]["vs_baseline"]) == pytest.approx(float(ours[1]["value"]) - baseline)
    # A study without a baseline has nothing to measure against.
    assert [row["vs_baseline"] for row in rows if row["study"] == "plain"] == [""]


def test_a_new_full_study_queues_the_baseline_then_the_spaces_best_known_config(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    spec = StudySpec(space="full", backend="tpe", epochs=7, seed=2)
    study = open_study(storage, "f", spec, get_backend("tpe")(seed=2, pruner="hyperband", epochs=7))
    queued = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs for t in queued] == [{"baseline": True}, {"prior": True}]
    known = prior("full", spec.base())
    assert (known.epochs, known.seed) == (7, 2)
    assert queued[1].system_attrs["fixed_params"] == params_for("full", known)
    without = StudySpec(space="full", backend="tpe", prior=False)
    plain = open_study(storage, "g", without, get_backend("tpe")(seed=0, pruner="hyperband", epochs=20))
    assert [t.user_attrs for t in plain.get_trials(deepcopy=False)] == [{"baseline": True}]
