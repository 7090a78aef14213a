"""Tests for search/report/: one study's page and PNGs, and the comparison of the spaces, from real storages."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import matplotlib.image
import optuna
import pytest
from conftest import TINY_STUDY, TINY_STUDY_TRIALS, search_cli
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.cli import main
from search.report.compare import compare_spaces, loss_gap
from search.report.study import BEST_CURVES, learning_curves, write_study_report
from search.storage import open_storage
from spaces import SPACES

IMAGES = ["history.png", "importances.png", "learning_curves.png", "parallel_coordinate.png"]


def _history(accuracy: float, gap: float) -> dict[str, list[float]]:
    """Three epochs whose last is best: val_accuracy ends at `accuracy`, val_loss ends `gap` above the loss."""
    loss = [0.9, 0.5, 0.3]
    return {
        "loss": loss,
        "accuracy": [0.8, 0.9, 0.95],
        "val_loss": [value + gap * epoch / 3 for epoch, value in enumerate(loss, start=1)],
        "val_accuracy": [accuracy - 0.02, accuracy - 0.01, accuracy],
        "learning_rate": [0.001] * 3,
    }


def _trial(accuracy: float, units: int, gap: float = 0.1, *, baseline: bool = False, seconds: float = 10.0):
    history = _history(accuracy, gap)
    attrs = {"history": history, "best_epoch": 3, "first_epoch": 1, "epochs_run": 3, "seconds": seconds}
    attrs |= {"param_count": 785 * units + 10 * (units + 1), "config": {"hidden_units": [units]}}
    return create_trial(
        params={"n_layers": 1, "units_layer_1": units},
        distributions={"n_layers": IntDistribution(1, 8), "units_layer_1": IntDistribution(16, 1024, log=True)},
        value=accuracy,
        intermediate_values=dict(enumerate(history["val_accuracy"], start=1)),
        user_attrs=attrs | ({"baseline": True} if baseline else {}),
    )


def _study(storage: str, name: str, space: str, trials: list[FrozenTrial], objective: str = "val_accuracy") -> None:
    direction = "maximize" if objective == "val_accuracy" else "minimize"
    study = optuna.create_study(storage=open_storage(storage), study_name=name, direction=direction)
    for key, value in {"space": space, "objective": objective, "backend": "tpe", "epochs": 3}.items():
        study.set_user_attr(key, value)
    for trial in trials:
        study.add_trial(trial)


def test_report_of_a_real_study_writes_a_self_contained_page_and_four_plots(tiny_study: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = search_cli("report", "--study", TINY_STUDY, "--storage", tiny_study, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"wrote {out / 'report.html'} and 4 images: {', '.join(IMAGES)}"
    progress = [line for line in result.stderr.splitlines() if line.startswith(f"report '{TINY_STUDY}': ")]
    assert len(progress) == 4 and all(line.endswith(f"(complete trials: {TINY_STUDY_TRIALS})") for line in progress)
    page = (out / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert [base64.b64decode(data) for data in embedded] == [(out / name).read_bytes() for name in IMAGES]
    assert "http://" not in page and "https://" not in page and "<script" not in page  # views offline
    for name in IMAGES:
        pixels = matplotlib.image.imread(out / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 400, (name, pixels.shape)
        assert pixels.std() > 0.05, f"{name} is blank"
    best = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study).best_trial
    assert f"Best: trial {best.number}, val_accuracy {best.value:.4f}." in page
    assert f"Trials: {TINY_STUDY_TRIALS} complete, 0 pruned, 0 failed, 0 running." in page


def test_plots_that_say_nothing_are_replaced_by_the_reason(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    _study(storage, "one", "size", [_trial(0.9, 64), create_trial(state=TrialState.PRUNED)])
    _study(storage, "same", "size", [_trial(0.9, 64), _trial(0.91, 64)])
    stale = tmp_path / "one" / "importances.png"
    stale.parent.mkdir()
    stale.write_bytes(b"left by an earlier report")
    lines: list[str] = []

    page, *images = write_study_report(storage, "one", tmp_path / "one", note=lines.append)
    assert [image.name for image in images] == [name for name in IMAGES if name != "importances.png"]
    assert not stale.exists()
    assert "Not drawn: importances need at least 2 complete trials, the study has 1." in page.read_text()
    steps = ("optimization history", "parameter importances", "learning curves of the best trials")
    steps += ("parallel coordinates",)
    assert lines == [f"report 'one': {step} (complete trials: 1)" for step in steps]

    page, *_ = write_study_report(storage, "same", tmp_path / "same", note=lines.append)
    assert "Not drawn: no parameter takes two different values among the complete trials." in page.read_text()


def test_learning_curves_show_train_and_validation_loss_of_the_best_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    accuracies = [0.90, 0.95, 0.93, 0.97, 0.91, 0.96, 0.92]
    _study(storage, "seven", "size", [_trial(a, 16 * (i + 1), gap=i / 10) for i, a in enumerate(accuracies)])
    figure = learning_curves(optuna.load_study(study_name="seven", storage=storage), "val_accuracy")
    lines = figure.axes[0].get_lines()
    curves = [line for line in lines if line.get_label().startswith("trial")]
    best_five = sorted(range(len(accuracies)), key=lambda i: -accuracies[i])[:BEST_CURVES]
    assert [line.get_label() for line in curves[::2]] == [
        f"trial {i} (val_accuracy {accuracies[i]:.4f}) train" for i in best_five
    ]
    for number, (train, validation) in zip(best_five, zip(curves[::2], curves[1::2], strict=True), strict=True):
        expected = _history(accuracies[number], number / 10)
        assert list(train.get_xdata()) == [1, 2, 3] and list(train.get_ydata()) == expected["loss"]
        assert list(validation.get_ydata()) == expected["val_loss"] and validation.get_linestyle() == "--"
    dots = [line for line in lines if line.get_marker() == "o"]
    assert [float(dot.get_xdata()[0]) for dot in dots] == [3.0] * BEST_CURVES  # each trial's best epoch


def test_empty_unknown_or_unnamed_study_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    _study(storage, "empty", "size", [create_trial(state=TrialState.PRUNED)])
    for args, message in [
        (
            ["--study", "empty"],
            "study 'empty' has no complete trial yet; let `make search` finish one, then report again",
        ),
        (["--study", "nope"], f"no study named 'nope' in {storage}; known: empty"),
        ([], "name the study to report with --study NAME (`search rank` lists them), or pass --compare"),
    ]:
        assert main(["report", *args, "--storage", storage, "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_compare_says_when_only_the_baseline_finished(tmp_path: Path) -> None:
    """Searched trials all paused or pruned (a short asha study): the row says so, not only a zero gain."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    paused = [create_trial(state=TrialState.PRUNED, intermediate_values={3: 0.99}) for _ in range(2)]
    _study(storage, "batchnorm-short", "batchnorm", [_trial(0.95, 512, baseline=True), *paused])
    row = compare_spaces([optuna.load_study(study_name="batchnorm-short", storage=storage)]).set_index("space")
    assert row.loc["batchnorm", "gain"] == 0.0
    assert row.loc["batchnorm", "note"].startswith("only the baseline finished: 2 trials stopped early")


def test_compare_lists_every_space_and_what_it_bought(
    tiny_study: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.copy_study(from_study_name=TINY_STUDY, from_storage=tiny_study, to_storage=open_storage(storage))
    baseline = _trial(0.95, 512, gap=0.30, baseline=True, seconds=20.0)
    near = _trial(0.9695, 64)  # within 0.1 point of the best, a quarter of its size
    _study(storage, "dropout-a", "dropout", [baseline, _trial(0.97, 256, gap=0.05, seconds=30.0), near])
    _study(storage, "dropout-b", "dropout", [_trial(0.96, 128)])  # worse: not the one compared
    _study(storage, "schedule-pruned", "schedule", [create_trial(state=TrialState.PRUNED)])
    _study(storage, "full-loss", "full", [_trial(0.2, 64)], objective="val_loss")

    assert main(["report", "--compare", "--storage", storage, "--out", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [row.split(" | ")[0].strip("| ") for row in table[2:]] == list(SPACES)
    rows = {row.split(" | ")[0].strip("| "): [cell.strip() for cell in row.strip("|").split("|")] for row in table[2:]}
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    dropout = dict(zip(header, rows["dropout"], strict=True))
    assert dropout["study"] == "dropout-a" and dropout["complete"] == "3" and dropout["best_trial"] == "1"
    assert (dropout["best_val_accuracy"], dropout["baseline_val_accuracy"], dropout["gain"]) == (
        "0.9700", "0.9500", "+0.0200"
    )  # fmt: skip
    assert (dropout["loss_gap"], dropout["baseline_loss_gap"]) == ("0.050", "0.300")
    assert (dropout["params"], dropout["best_trial_seconds"], dropout["study_seconds"]) == ("203,530", "30", "60")
    assert (dropout["smallest_near_best"], dropout["smallest_params"]) == ("2", "50,890")
    notes = {space: dict(zip(header, rows[space], strict=True))["note"] for space in SPACES}
    assert notes["batchnorm"] == notes["augment"] == "missing: no study of this space"
    assert notes["schedule"] == "missing: no complete trial in schedule-pruned"
    assert notes["full"] == "missing: no val_accuracy study"

    real = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study)
    size = compare_spaces([real]).set_index("space").loc["size"]
    first = real.trials[0]
    assert first.user_attrs["baseline"] and size["baseline_val_accuracy"] == first.value
    assert size["best_val_accuracy"] == real.best_value and size["loss_gap"] == loss_gap(real.best_trial)
    assert size["params"] == real.best_trial.user_attrs["param_count"]
    assert size["study_seconds"] == pytest.approx(sum(t.user_attrs["seconds"] for t in real.trials))
    page = (tmp_path / "out" / "compare.html").read_text()
    assert "Missing spaces: batchnorm, schedule, augment, full." in page
    assert matplotlib.image.imread(tmp_path / "out" / "compare.png").shape[1] > 800
