"""Tests for search/final.py: the final retrain, the saved `.keras` model, the one look at the test set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import REPO, TINY_STUDY, search_cli

from search._keras import keras
from search.config import TrialConfig
from search.configfile import ConfigFile, read_yaml
from search.data import Dataset
from search.errors import UserError
from search.final import evaluate_saved, retrain
from search.scores import output_paths, report_lines
from search.train import TrialResult, train

# Batch norm, dropout and augmentation: the saved model must come back (in safe mode) in inference
# mode, with the batch norm's moving statistics and without the training-only layers' noise.
TINY = TrialConfig(
    hidden_units=(32,),
    batchnorm="before_activation",
    input_dropout=0.2,
    augment_rotate=10.0,
    epochs=1,
    learning_rate=0.003,
)
# Retraining an exported trial in a new process reproduced its recorded validation accuracy
# bit for bit on the 2-core CPU (README "Export and retrain"); this allows for another CPU's rounding.
TOLERANCE = 0.005


class _TestAccuracyInMemory(keras.callbacks.Callback):
    """The trained model's test accuracy before it is saved (one epoch: the last weights are the best)."""

    accuracy = float("nan")

    def __init__(self, data: Dataset) -> None:
        super().__init__()
        self.data = data

    def on_train_end(self, logs: dict | None = None) -> None:
        probabilities = self.model.predict(self.data.x_test, batch_size=1000, verbose=0)
        self.accuracy = float(np.mean(probabilities.argmax(axis=1) == self.data.y_test))


@pytest.fixture(scope="module")
def trained(tiny_mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrialResult, Path, float]:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    probe = _TestAccuracyInMemory(tiny_mnist)
    result = train(TINY, tiny_mnist, [probe], save_model=path)
    return result, path, probe.accuracy


def test_saved_model_gives_the_same_test_accuracy_as_the_trained_one(
    trained: tuple[TrialResult, Path, float], tiny_mnist: Dataset
) -> None:
    result, path, in_memory = trained
    scores = evaluate_saved(path, tiny_mnist)
    assert in_memory > 0.5
    assert scores["test"]["accuracy"] == pytest.approx(in_memory, abs=1e-6)
    assert scores["validation"]["accuracy"] == pytest.approx(result.best(), abs=1e-6)
    assert scores["validation"]["loss"] == pytest.approx(result.best("val_loss"), rel=1e-5)


def test_retrain_reproduces_the_recorded_value_and_writes_model_and_scores(
    trained: tuple[TrialResult, Path, float], tiny_mnist: Dataset, tmp_path: Path
) -> None:
    result, _, in_memory = trained
    provenance = {"study": "s", "space": "size", "backend": "tpe", "trial": 4, "objective": "val_accuracy"}
    config_path = tmp_path / "winner.yaml"
    config_path.write_text(ConfigFile(TINY, {**provenance, "value": result.best()}).to_yaml(config_path.name))
    scores = retrain(config_path, data=tiny_mnist)
    model_path, scores_path = output_paths(config_path)
    assert (model_path, scores_path) == (tmp_path / "winner.keras", tmp_path / "winner.scores.json")
    assert json.loads(scores_path.read_text()) == scores
    assert scores["test"]["accuracy"] == pytest.approx(in_memory, abs=1e-6)  # same seed, same process
    assert scores["recorded"]["comparable"] is True
    assert scores["recorded"]["difference"] == pytest.approx(0.0, abs=1e-6)
    assert scores["config"] == TINY.to_dict()
    assert scores["trained_on"] == "2,000 training images"
    lines = report_lines(scores)
    assert lines[1].startswith(f"validation accuracy {result.best():.4f}")
    assert "trial 4 recorded val_accuracy" in lines[1] and "(difference +0.0000)" in lines[1]
    assert lines[2].startswith(f"test accuracy {scores['test']['accuracy']:.4f}")


def test_train_epochs_trains_longer_than_the_trial_and_says_so(tiny_mnist: Dataset, tmp_path: Path) -> None:
    provenance = {"study": "s", "space": "size", "backend": "tpe", "trial": 4, "objective": "val_accuracy"}
    config_path = tmp_path / "longer.yaml"
    config_path.write_text(ConfigFile(TINY, {**provenance, "value": 0.9}).to_yaml(config_path.name))
    scores = retrain(config_path, data=tiny_mnist, epochs=2)
    assert (scores["epochs"], scores["config_epochs"], scores["epochs_run"]) == (2, 1, 2)
    assert scores["config"]["epochs"] == 2 and len(scores["history"]["loss"]) == 2
    assert scores["recorded"]["comparable"] is False
    assert "the trial trained up to 1 epochs, this run 2" in scores["recorded"]["note"]
    assert any(line.startswith("--epochs 2: the config (the trial) says 1 epochs") for line in report_lines(scores))
    assert json.loads(output_paths(config_path)[1].read_text())["epochs"] == 2


def test_full_train_says_the_validation_score_is_not_fair(tiny_mnist: Dataset, tmp_path: Path) -> None:
    config_path = tmp_path / "bare.yaml"
    config_path.write_text(yaml.safe_dump(TINY.to_dict()))  # a bare mapping of every key
    out_dir = tmp_path / "out"
    scores = retrain(config_path, data=tiny_mnist, full_train=True, out_dir=out_dir)
    assert (out_dir / "bare.keras").is_file() and (out_dir / "bare.scores.json").is_file()
    assert scores["trained_on"] == "2,500 training + validation images"
    assert scores["recorded"] is None  # a bare mapping has no provenance
    assert "not a fair number, --full-train trained on these images" in report_lines(scores)[1]


def test_a_subset_larger_than_the_training_split_is_refused(tiny_mnist: Dataset, tmp_path: Path) -> None:
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(TINY.to_dict()))
    with pytest.raises(UserError, match="--subset must be 0 \\(all\\) to 2000, got 5000"):
        retrain(config_path, data=tiny_mnist, subset_size=5000)
    assert not (tmp_path / "c.keras").exists()


def test_run_export_train_reproduces_the_trial_in_a_new_process(tiny_study: str, tmp_path: Path) -> None:
    exported = search_cli("export", "--storage", tiny_study, "--out", str(tmp_path / "best.yaml"))
    assert exported.returncode == 0, exported.stderr
    best = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study).best_trial
    wrote = f"wrote {tmp_path / 'best.yaml'}: trial {best.number} of study '{TINY_STUDY}', val_accuracy 0."
    assert exported.stdout.startswith(wrote)
    recorded = read_yaml(tmp_path / "best.yaml").provenance["value"]
    trained = search_cli("train", str(tmp_path / "best.yaml"), "--subset", "500", "--out-dir", str(tmp_path / "out"))
    assert trained.returncode == 0, trained.stderr
    scores = json.loads((tmp_path / "out" / "best.scores.json").read_text())
    assert scores["recorded"]["value"] == recorded
    assert scores["recorded"]["comparable"] is True  # same 500 training images as the study
    assert abs(scores["validation"]["accuracy"] - recorded) <= TOLERANCE
    validation = rf"^validation accuracy 0\.\d{{4}} .*trial {best.number} recorded val_accuracy"
    assert re.search(validation, trained.stdout, re.M)
    assert re.search(r"^test accuracy 0\.\d{4} ", trained.stdout, re.M)
    assert (tmp_path / "out" / "best.keras").is_file()


def test_cli_train_refuses_a_bad_config_in_one_line_before_training(tmp_path: Path) -> None:
    config_path = tmp_path / "bad.yaml"
    config_path.write_text(yaml.safe_dump({**TINY.to_dict(), "dropout": 2.0}))
    result = search_cli("train", str(config_path))
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[-1]
        == f"error: {config_path}: config key 'dropout' is 2.0; allowed range: 0.0 to 0.9"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad.keras").exists()


def test_only_search_train_touches_the_test_images() -> None:
    readers = sorted(
        str(path.relative_to(REPO))
        for folder in ("search", "spaces")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"\.x_test\b", path.read_text())
    )
    assert readers == ["search/final.py"]
