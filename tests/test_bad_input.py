"""Bad input a user can give the command line: each is one `error:` line, exit status 2, and nothing lost.

Run in-process through `search.cli.main` (what `python -m search` calls), so forty cases cost no
forty TensorFlow start-ups. Config-file, export and data-cache errors have their own tests beside
their modules (test_export, test_final, test_data); this table holds the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import free_port

from search.cli import main
from search.config import TrialConfig


def _error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one line a bad command prints, after checking its exit status and that nothing else was printed."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


RUN = ["run", "--trials", "1", "--epochs", "1", "--subset", "100"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--space", "nope"], "unknown space 'nope'; known spaces: size"),
        (["--backend", "nope"], "unknown backend 'nope'; known backends: tpe"),
        (["--pruner", "nope"], "unknown pruner 'nope'; known pruners: asha, hyperband"),
        (["--objective", "nope"], "unknown objective 'nope'; known objectives: val_accuracy"),
        (["--objective", "val_accuracy,size"], "unknown objective 'size'; known objectives: val_accuracy"),
        (["--objective", "val_accuracy,params,params"], "names params twice"),
        (["--objective", "params"], "name one validation metric (val_accuracy or val_loss) first"),
        (["--objective", "val_accuracy,latency", "--backend", "kt-random"], "backends that can: tpe, random"),
        (["--objective", "val_accuracy,params", "--backend", "kt-hyperband"], "backends that can: tpe, random"),
        (["--objective", "val_accuracy,params", "--pruner", "median"], "pick size-aware or none"),
        (["--trials", "0"], "--trials: must be at least 1, got 0"),
        (["--trials", "many"], "--trials: invalid positive value: 'many'"),
        (["--epochs", "-3"], "--epochs: must be at least 1, got -3"),
        (["--epochs", "5000"], "'epochs' is 5000; allowed range: 1 to 1000"),
        (["--timeout", "-1"], "--timeout: must be 0 or more minutes, got -1"),
        (["--timeout", "nan"], "--timeout: must be 0 or more minutes, got nan"),
        (["--workers", "0"], "--workers: must be at least 1, got 0"),
        (["--heartbeat", "0"], "--heartbeat: must be at least 1, got 0"),
        (["--subset", "-5"], "--subset: must be 0 or more, got -5"),
        (["--storage", "nosuchdb://x"], "cannot open storage nosuchdb://x"),
        (["--storage", "sqlite:////no/such/folder/s.db"], "folder /no/such/folder does not exist"),
    ],
)
def test_bad_run_flags(flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert message in _error_line([*RUN, *flags], capsys)


def test_an_unreachable_server_is_named(capsys: pytest.CaptureFixture) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"  # a free port: nothing listens there
    assert "cannot open storage postgresql+psycopg://nobody@127.0.0.1" in _error_line([*RUN, "--storage", url], capsys)


def test_a_truncated_database_is_refused_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "studies.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    cut = db.read_bytes()[: db.stat().st_size // 2]
    db.write_bytes(cut)
    line = _error_line(["rank", "--storage", f"sqlite:///{db}"], capsys)
    assert "corrupt" in line or "not a SQLite database" in line, line
    assert db.read_bytes() == cut


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--study", "nope"], "no study named 'nope' in the storage; known: s"),
        (["rank", "--study", "nope"], "no study named 'nope'"),
        (["export", "--study", "nope"], "no study named 'nope'"),
        (["export", "--study", "s", "--trial", "99"], "trial 99"),
        (["export", "--study", "s", "--max-params", "1000"], "study 's' optimizes one"),
        (["export", "--study", "s", "--max-latency", "0"], "--max-latency: must be above 0, got 0"),
        (["rank", "--study", "s", "--pareto"], "--pareto lists the front of studies of several objectives"),
        (["report", "--study", "nope"], "no study named 'nope'"),
    ],
)
def test_unknown_studies_and_trials(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.enqueue_trial({})
    assert message in _error_line([*argv, "--storage", url], capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (os.urandom(3000), "is not a text file"),
        (b"", "must be a mapping"),
        (b"config: {dropout: 0.2\n", "is not valid YAML"),
        (yaml.safe_dump({"config": {"dropout": 0.2}}).encode(), "missing"),
        (yaml.safe_dump({**TrialConfig().to_dict(), "dropout": "high"}).encode(), "'dropout'"),
        (yaml.safe_dump({**TrialConfig().to_dict(), "colour": "red"}).encode(), "'colour'"),
    ],
    ids=["binary", "empty", "malformed", "incomplete", "mistyped", "unknown-key"],
)
def test_bad_config_files_for_train(content: bytes, message: str, tmp_path: Path, capsys) -> None:
    config = tmp_path / "x.yaml"
    config.write_bytes(content)
    assert message in _error_line(["train", str(config)], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"], "nothing trained, nothing written"
