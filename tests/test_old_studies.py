"""Studies made by earlier versions still read and resume: a database file made by main of 2026-12 (fixtures/).

`fixtures/main-2026-12.db` holds study `size-tpe`, made by that day's code with
`search run --space size --trials 2 --epochs 1 --subset 200`: trial 0 the baseline, trial 1
sampled; then trial 2, recorded as diverged ("loss became NaN at epoch 1") by that code's
objective (its training told to report a NaN), and trial 3, refused as surplus by the same
objective asked for one trial more than the study's two. Vacuumed to 1 KB pages to keep it small.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from conftest import search_cli
from optuna.trial import TrialState

from search.errors import UserError
from search.storage import open_storage
from search.study import load_spec, open_search

FIXTURE = Path(__file__).parent / "fixtures" / "main-2026-12.db"
STUDY = "size-tpe"


def _copy(tmp_path: Path) -> str:
    """A copy: opening a database switches it to write-ahead logging, and a resume writes to it."""
    shutil.copy(FIXTURE, tmp_path / "studies.db")
    return f"sqlite:///{tmp_path / 'studies.db'}"


def test_an_old_study_ranks(tmp_path):
    url = _copy(tmp_path)
    rows = json.loads(search_cli("rank", "--storage", url, "--format", "json").stdout)
    assert [(row["trial"], row["baseline"], row["epochs"]) for row in rows] == [(0, True, 1), (1, False, 1)]
    assert rows[0]["layers"] == "512-512-256-256-128-128-8" and rows[0]["params"] == 912_226
    table = search_cli("rank", "--storage", url)
    assert table.returncode == 0, table.stderr
    counts = table.stdout.splitlines()[-1].split()
    assert counts == [STUDY, "size", "tpe", "2", "0", "2", "0"]  # complete, pruned, fail, running


def test_an_old_study_exports_its_best_trial(tmp_path):
    exported = search_cli("export", "--storage", _copy(tmp_path))
    assert exported.returncode == 0, exported.stderr
    assert "trial 0 of study 'size-tpe'" in exported.stdout


def test_an_old_study_resumes_one_more_trial(tmp_path):
    url = _copy(tmp_path)
    run = ("run", "--space", "size", "--trials", "3", "--epochs", "1", "--subset", "200", "--storage", url)
    resumed = search_cli(*run)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Warning" not in resumed.stderr, resumed.stderr  # the trial lines say it all, once
    # The old surplus trial is told apart from the old diverged one, as when they were made.
    assert "done: 3 complete, 0 pruned, 1 failed trials" in resumed.stdout
    assert "(1 more left untrained" in resumed.stdout
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2 + [TrialState.COMPLETE]
    assert trials[4].user_attrs["config"]["epochs"] == 1 and "baseline" not in trials[4].user_attrs


def test_a_pruner_said_is_still_checked_against_the_studys(tmp_path):
    # Left unsaid, the pruner is the study's own (the resume above, though the default changed); said, it must match.
    url = _copy(tmp_path)
    run = ("run", "--space", "size", "--trials", "3", "--epochs", "1", "--subset", "200", "--storage", url)
    refused = search_cli(*run, "--pruner", "asha")
    assert refused.returncode == 2 and "made with pruner='successive-halving'" in refused.stderr


def test_an_old_study_trained_on_mnist_and_refuses_another_dataset(tmp_path):
    # It records no dataset: studies were all of MNIST then.
    url = _copy(tmp_path)
    spec = load_spec(open_storage(url), STUDY)
    assert spec.dataset == "mnist"
    with pytest.raises(UserError, match="was made with dataset='mnist', not 'fashion-mnist'"):
        open_search(replace(spec, dataset="fashion-mnist"), url, STUDY, seed=0)
