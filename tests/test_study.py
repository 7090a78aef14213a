"""The study driver on real (tiny) trials: records, samplers and pruners, resume, failures, interrupts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import LIMIT, REPO, epochs_reported, search_cli, stop, wait_for
from optuna.trial import TrialState

import spaces
from search.cli import main
from search.config import TrialConfig
from search.errors import UserError
from search.rank import leaderboard, load_studies, state_counts, trial_rows
from search.record import FailReason
from search.study import StudySpec, run_study

TINY = {"subset": 300, "epochs": 2}


@pytest.fixture(autouse=True, scope="module")
def _small_space(small: str) -> None:
    """`_run`'s space (conftest.small_space) is known to the driver for this module's tests."""


def _run(tmp_path: Path, n_trials: int = 2, study: str = "s", **spec: object) -> optuna.Study:
    values = {"space": "small", "backend": "random", "pruner": "none", **TINY, **spec}
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert run_study(StudySpec(**values), study=study, storage=url, n_trials=n_trials, timeout=None) == 0
    return optuna.load_study(study_name=study, storage=url)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Study `s` (`_run`'s defaults): two trials, then resumed to three. Tests that change it copy the file."""
    folder = tmp_path_factory.mktemp("resumed")
    _run(folder, n_trials=2)
    _run(folder, n_trials=3)
    return folder / "studies.db"


def _copy(db: Path, folder: Path) -> Path:
    """A copy of database `db` in `folder`, through SQLite's backup (a file copy would miss its write-ahead log)."""
    copy = folder / "studies.db"
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_trials_record_params_value_curves_and_config(resumed):
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{resumed}")
    trials = study.get_trials(deepcopy=False)
    assert _states(study) == [TrialState.COMPLETE] * 3
    baseline, searched = trials[:2]
    assert baseline.user_attrs["baseline"] is True
    assert baseline.user_attrs["config"] == TrialConfig(epochs=2, seed=0).to_dict()
    assert baseline.user_attrs["param_count"] == 912_226
    assert baseline.params == {}  # the reference model, not a draw of the space
    for trial in trials:
        assert trial.distributions.keys() == trial.params.keys()
        assert trial.number == 0 or "n_layers" in trial.params
        assert sorted(trial.intermediate_values) == [1, 2]
        history = trial.user_attrs["history"]
        assert len(history["loss"]) == len(history["val_accuracy"]) == trial.user_attrs["epochs_run"] == 2
        assert trial.value == max(history["val_accuracy"])
        assert TrialConfig.from_dict(trial.user_attrs["config"], complete=True).epochs == 2
        assert {"seconds", "seed", "dataset", "versions", "backend", "best_epoch"} <= trial.user_attrs.keys()
    assert searched.user_attrs["seed"] == 1  # trial i trains with seed + i
    assert {"space", "backend", "objective", "pruner", "epochs", "base_config", "command"} <= study.user_attrs.keys()


def test_pruned_trials_stop_early_and_keep_their_curve(tmp_path):
    # Successive halving over four varied networks: the weaker ones must stop before the last epoch.
    study = _run(tmp_path, n_trials=4, pruner="successive-halving", epochs=3, subset=200, baseline=False)
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED]
    assert pruned, "four varied trials and no pruning at all"
    for trial in pruned:
        assert trial.user_attrs["epochs_run"] < 3
        assert len(trial.intermediate_values) == trial.user_attrs["epochs_run"]


def test_resume_counts_finished_trials(resumed):
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{resumed}")  # asked for 2, then for 3
    assert len(study.trials) == 3
    assert sum(t.user_attrs.get("baseline", False) for t in study.trials) == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"space": "dropout"}, "space"),
        ({"backend": "tpe"}, "backend"),
        ({"objective": "val_loss"}, "objective"),
        ({"epochs": 3}, "epochs"),  # the study has 2
    ],
)
def test_reusing_a_study_name_with_other_settings_is_refused(resumed, tmp_path, change, named):
    before = _copy(resumed, tmp_path).read_bytes()
    with pytest.raises(UserError, match=f"was made with {named}="):
        _run(tmp_path, n_trials=4, **change)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    assert len(study.trials) == 3
    assert (tmp_path / "studies.db").stat().st_size >= len(before)


def _diverging_space(trial, base: TrialConfig) -> TrialConfig:
    """A space with one point that diverges: plain SGD at rate 10 with a huge L2 overflows float32."""
    if trial.suggest_categorical("rate", ["sane", "absurd"]) == "absurd":
        return base.replace(hidden_units=(64,), optimizer="sgd", learning_rate=10.0, l2=1.0)
    return base.replace(hidden_units=(64,))


def test_a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(spaces.SPACES, "diverging", _diverging_space)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="d", storage=url)
    study.enqueue_trial({"rate": "absurd"})
    study.enqueue_trial({"rate": "sane"})
    study.enqueue_trial({"rate": "sane"})
    spec = StudySpec(space="diverging", backend="random", pruner="none", baseline=False, subset=2000, epochs=2)
    run_study(spec, study="d", storage=url, n_trials=2, timeout=None)
    trials = optuna.load_study(study_name="d", storage=url).trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "loss became NaN at epoch 1"
    assert [t.state for t in trials[1:]].count(TrialState.COMPLETE) == 2


def test_sigint_marks_the_running_trial_failed_and_says_how_to_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    command = [
        sys.executable,
        "-m",
        "search",
        "run",
        "--space",
        "size",
        "--backend",
        "random",
        "--pruner",
        "none",  # asha would pause trial 0 after 3 epochs
        "--epochs",
        "50",
        "--subset",
        "2000",
        "--trials",
        "3",
        "--study",
        "c",
        "--storage",
        url,
    ]
    # Started with SIGINT ignored, as a background job of a script is (and as some test runners
    # start their children): the search must stop on it all the same.
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        # Inside training, not between trials: 49 of its 50 epochs are still to come.
        wait_for(lambda: epochs_reported(tmp_path / "studies.db", 0), "trial 0 reporting an epoch", alive=process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=LIMIT)
    finally:
        stop(process)
    assert process.returncode == 130, output
    assert "interrupted: trial 0 was recorded as failed" in output
    assert "resume with: python -m search run" in output
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert FailReason.from_attrs(trials[0].user_attrs) == FailReason.INTERRUPTED


def test_val_loss_objective_is_minimized(tmp_path):
    study = _run(tmp_path, n_trials=2, objective="val_loss", epochs=1)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    for trial in study.trials:
        assert trial.value == min(trial.user_attrs["history"]["val_loss"])


def test_a_bad_flag_is_one_clear_line_from_the_real_command():
    """The whole table of bad input runs in-process (test_bad_input.py); this is the same path end to end."""
    result = search_cli("run", "--trials", "1", "--epochs", "1", "--subset", "100", "--space", "nope")
    assert result.returncode == 2
    known = ", ".join(name for name in spaces.SPACES if name != "small")  # the command knows no test-only space
    assert result.stderr == f"error: unknown space 'nope'; known spaces: {known}\n"


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n")
    result = search_cli("run", "--trials", "1", "--storage", f"sqlite:///{notes}")
    assert result.returncode == 2 and "is not a SQLite database" in result.stderr
    assert notes.read_text() == "my notes, not a database\n"


def test_a_corrupt_database_is_refused_and_left_alone(resumed, tmp_path):
    db = _copy(resumed, tmp_path)
    data = bytearray(db.read_bytes())
    data[100:] = b"\x5a" * (len(data) - 100)  # keep the 100-byte file header, wreck every page
    db.write_bytes(bytes(data))
    result = search_cli("rank", "--storage", f"sqlite:///{db}")
    assert result.returncode == 2 and "corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == bytes(data)


def test_rank_in_every_format(resumed, capsys):
    url = f"sqlite:///{resumed}"
    table = search_cli("rank", "--storage", url).stdout  # the real command once; the formats in-process

    def rank(*flags: str) -> str:
        assert main(["rank", "--storage", url, *flags]) == 0
        return capsys.readouterr().out

    assert "rank" in table and "vs_baseline" in table and "complete" in table
    csv = rank("--format", "csv").splitlines()
    assert csv[0].startswith("rank,study,") and len(csv) == 4
    json_rows = json.loads(rank("--format", "json"))
    assert [row["rank"] for row in json_rows] == [1, 2, 3]
    assert [row["value"] for row in json_rows] == sorted((row["value"] for row in json_rows), reverse=True)
    assert rank("--format", "markdown").startswith("| rank | study |")
    assert rank("--top", "1", "--format", "csv").count("\n") == 2


def test_rank_reads_what_optuna_reads(tmp_path):
    """The leaderboard's own queries against Optuna's API, on every state and attr a row shows."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="r", storage=url, direction="maximize")
    value = optuna.distributions.FloatDistribution(0, 1)
    for number, (state, accuracy) in enumerate(
        [(TrialState.COMPLETE, 0.91), (TrialState.PRUNED, None), (TrialState.COMPLETE, 0.95), (TrialState.FAIL, None)]
    ):
        attrs = {"config": TrialConfig(seed=number).to_dict(), "seconds": 1.5 * number, "epochs_run": number}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=accuracy,
                params={"x": 0.5},
                distributions={"x": value},
                intermediate_values={1: 0.5},
                user_attrs={**attrs, "baseline": number == 0},
            )
        )
    study.ask()  # one running
    loaded = load_studies(url)[0]
    rows = trial_rows(loaded)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert [(r["trial"], r["value"], r["seconds"], r["epochs"]) for r in rows] == [
        (t.number, t.value, t.user_attrs["seconds"], t.user_attrs["epochs_run"]) for t in complete
    ]
    assert [r["vs_baseline"] for r in rows] == pytest.approx([0.0, 0.04])
    assert rows[1]["layers"] == "-".join(map(str, TrialConfig().hidden_units))
    counted = state_counts([loaded]).iloc[0]
    assert (counted["complete"], counted["pruned"], counted["fail"], counted["running"]) == (2, 1, 1, 1)


def test_a_short_leaderboard_reads_only_its_rows_and_shows_what_the_whole_one_shows(tmp_path):
    """`--top N` reads the records of the best N, the baseline and the front only: its rows (ties
    included) and each row's gain over a baseline far down the list are those of the whole board."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="top", storage=url, direction="minimize", load_if_exists=False)
    losses = [0.9, 0.3, 0.2, 0.3, 0.5, 0.2, 0.7, 0.3]  # ties across the cut at 3
    for number, loss in enumerate(losses):
        attrs = {"config": TrialConfig(seed=number).to_dict(), "seconds": 1.0, "baseline": number == 0}
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=loss, user_attrs=attrs))
    study.set_user_attr("objective", "val_loss")
    loaded = load_studies(url)
    whole, short = leaderboard(loaded), leaderboard(loaded, 3)
    assert len(trial_rows(loaded[0], 3)) == 4  # the best 3 and the baseline, not all 8
    assert short.to_dict("records") == whole.head(3).to_dict("records")
    assert list(short["trial"]) == [2, 5, 1] and list(short["vs_baseline"]) == pytest.approx([0.7, 0.7, 0.6])


def test_rank_errors_are_one_line(tmp_path):
    missing = search_cli("rank", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'empty.db'}", study_name="x").trials  # noqa: B018
    unknown = search_cli("rank", "--storage", f"sqlite:///{tmp_path / 'empty.db'}", "--study", "nope")
    assert unknown.returncode == 2 and "no study named 'nope'" in unknown.stderr
