"""Tests for search/kept.py and search/artifacts.py: the best trials' models kept as Optuna artifacts, no more.

The bookkeeping runs the real trial loop with `search.synthetic`'s made-up trials (a few bytes of
"model", no TensorFlow); the real models are the shared tiny study's (`tiny_study`).
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import optuna
import pytest
from conftest import TINY_STUDY, TINY_STUDY_KEEPS, run_synthetic_workers, search_cli
from optuna.trial import TrialState

from search import synthetic
from search._keras import keras
from search.artifacts import ModelStore, recorded_store, settle_keeping
from search.backends import get_backend
from search.cli import main
from search.configfile import read_yaml, write_yaml
from search.data import Dataset
from search.errors import UserError
from search.export import export_trial
from search.final import evaluate_stored
from search.kept import KeptModels, kept_models
from search.progress import Progress
from search.record import TrialRecord
from search.storage import open_storage
from search.trials import run_trials

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _synthetic(tmp_path: Path, name: str = "t", keep: int = 3) -> tuple[optuna.Study, KeptModels]:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    synthetic.create_study(url, name, n_trials=100, keep_models=keep)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return study, KeptModels.of(settle_keeping(url, study, keep=None, root=None))


def _run(study: optuna.Study, models: KeptModels, n_trials: int, pruner: str = "none") -> None:
    backend = get_backend("random")(seed=n_trials, pruner=pruner, epochs=synthetic.EPOCHS)
    runner = synthetic.SyntheticObjective(Progress(n_trials, "value", out=io.StringIO()), models=models)
    run_trials(study, backend, runner, n_trials)


def _best(study: optuna.Study, keep: int) -> list[int]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(t.number for t in sorted(complete, key=lambda t: (-t.value, t.number))[:keep])


def _files(store: ModelStore) -> set[str]:
    folder = Path(store.where)
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_the_best_three_keep_their_models_while_trials_come_and_go(tmp_path: Path) -> None:
    study, models = _synthetic(tmp_path)
    for n_trials in range(1, 13):
        _run(study, models, n_trials, pruner="median")
        kept = kept_models(study)
        assert [m.number for m in kept] == _best(study, 3), f"after {n_trials} trials"
        assert _files(models.store) == {m.artifact_id for m in kept}
        assert list(models.scratch.iterdir()) == []  # every trial's scratch model is gone, kept or not
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert TrialState.PRUNED in states.values(), "the pruner never acted: no pruned trial was checked"
    assert len(kept) == 3 and all(states[m.number] == TrialState.COMPLETE for m in kept)
    assert all(m.filename == f"trial_{m.number}.keras" for m in kept)
    # Resumed with --keep-models 1: the next trial's end leaves the best one only.
    fewer = KeptModels.of(settle_keeping(f"sqlite:///{tmp_path / 'studies.db'}", study, keep=1, root=None))
    _run(study, fewer, 13)
    assert [m.number for m in kept_models(study)] == _best(study, 1)
    assert len(_files(models.store)) == 1


def test_an_upload_that_fails_fails_the_keeping_not_the_trial(tmp_path: Path) -> None:
    study, models = _synthetic(tmp_path)
    folder = Path(models.store.where)
    folder.write_text("a file where the study's folder goes: no upload can succeed, not even root's")
    _run(study, models, 1)
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    why = TrialRecord.from_attrs(trial.user_attrs).model_not_kept
    assert why is not None and why.startswith(f"keeping it in {models.store.where} failed: ")
    assert kept_models(study) == []


def test_a_trial_failed_as_stale_while_its_model_is_kept_does_not_stop_the_worker(tmp_path: Path) -> None:
    study, models = _synthetic(tmp_path)
    trial = study.ask()
    models.scratch_path(trial.number).write_text("a model")
    study.tell(trial, state=TrialState.FAIL)  # another worker took it for a dead worker's
    models.trial_ended(study, trial, TrialState.COMPLETE, 0.9)
    assert kept_models(study) == [] and list(models.scratch.iterdir()) == []


def test_keep_zero_keeps_none(tmp_path: Path) -> None:
    study, models = _synthetic(tmp_path, keep=0)
    _run(study, models, 2)
    assert kept_models(study) == [] and _files(models.store) == set()


def test_two_workers_finishing_at_once_never_delete_each_other_s_best(storage_url: str, tmp_path: Path) -> None:
    root = None if storage_url.startswith("sqlite") else str(tmp_path / "shared")  # PostgreSQL: no default store
    synthetic.create_study(storage_url, "two", n_trials=24, keep_models=3, artifacts=root)
    run_synthetic_workers(storage_url, "two", 2, tmp_path, together=True)
    study = optuna.load_study(study_name="two", storage=open_storage(storage_url))
    store = recorded_store(study.user_attrs, "two")
    kept = kept_models(study)
    assert [m.number for m in kept] == _best(study, 3)
    assert _files(store) == {m.artifact_id for m in kept}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len({t.user_attrs["worker"] for t in complete}) == 2, "one worker did all the trials: nothing overlapped"


def test_where_models_go_is_settled_once_and_said_in_one_line(tmp_path: Path) -> None:
    study, _ = _synthetic(tmp_path)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    elsewhere = str(tmp_path / "elsewhere")
    with pytest.raises(UserError, match=f"study 't' keeps its models in {tmp_path / 'studies.artifacts'}; leave out"):
        settle_keeping(url, study, keep=None, root=elsewhere)
    fresh = optuna.create_study(study_name="pg", storage=open_storage(url))  # as new on PostgreSQL: nothing recorded
    postgres = settle_keeping("postgresql+psycopg://search@127.0.0.1/studies", fresh, keep=None, root=None)
    assert postgres.store is None
    assert postgres.line == (
        "models are not kept: workers on several machines need one store they all reach; pass --artifacts with a "
        "shared folder or s3://bucket/prefix"
    )
    with pytest.raises(UserError, match="names no bucket"):
        settle_keeping(url, study, keep=None, root="s3://")


def test_an_s3_store_without_boto3_says_what_to_install() -> None:
    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed")
    with pytest.raises(UserError, match=r"an s3:// model store needs boto3: pip install -e '\.\[s3\]'"):
        ModelStore("s3://bucket/prefix", "study").open()


def test_the_tiny_study_keeps_its_best_two_models(tiny_study: str) -> None:
    study = optuna.load_study(study_name=TINY_STUDY, storage=open_storage(tiny_study))
    kept = kept_models(study)
    assert [m.number for m in kept] == _best(study, TINY_STUDY_KEEPS)
    assert _files(recorded_store(study.user_attrs, TINY_STUDY)) == {m.artifact_id for m in kept}


# What reads the kept models: export --model, train --from-stored, clean-artifacts.


def test_clean_artifacts_removes_a_deleted_study_s_models_and_stray_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study, models = _synthetic(tmp_path, "kept")
    _run(study, models, 2)
    gone, gone_models = _synthetic(tmp_path, "gone")
    _run(gone, gone_models, 2)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.delete_study(study_name="gone", storage=url)
    (Path(models.store.where) / "stray").write_text("left by an upload that failed midway")
    assert main(["clean-artifacts", "--storage", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"removed {gone_models.store.where.rstrip('/')}: 2 file(s) of study 'gone', which the storage no longer has",
        f"removed 1 file(s) from {models.store.where.rstrip('/')} that no trial of 'kept' records",
    ]
    assert _files(models.store) == {m.artifact_id for m in kept_models(study)} and len(kept_models(study)) == 2
    assert not Path(gone_models.store.where).exists()


@pytest.fixture
def best_exported(tiny_study: str, tmp_path: Path) -> tuple[Path, optuna.trial.FrozenTrial]:
    result = search_cli(
        "export",
        "--storage",
        tiny_study,
        "--out",
        str(tmp_path / "best.yaml"),
        "--model",
        str(tmp_path / "best-stored.keras"),
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "best.yaml", optuna.load_study(study_name=TINY_STUDY, storage=tiny_study).best_trial


def test_the_best_stored_model_gives_its_recorded_validation_accuracy_exactly(best_exported, mnist: Dataset) -> None:
    config, best = best_exported
    model = keras.saving.load_model(config.parent / "best-stored.keras", safe_mode=True)
    scores = model.evaluate(mnist.x_val, mnist.y_val, batch_size=1000, verbose=0, return_dict=True)
    keras.backend.clear_session()
    assert scores["accuracy"] == best.value


def test_train_from_stored_tests_the_kept_model_without_retraining(
    best_exported, capsys: pytest.CaptureFixture
) -> None:
    config, best = best_exported
    assert main(["train", str(config), "--from-stored", "--out-dir", str(config.parent / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"not retrained (--from-stored): trial {best.number}'s model as the search kept it, ")
    assert f"trial {best.number} recorded val_accuracy {best.value:.4f} (difference +0.0000)" in lines[1]
    scores = json.loads((config.parent / "out" / "best.scores.json").read_text())
    assert scores["from_stored"].endswith(read_yaml(config).provenance["stored_model"]["artifact_id"])
    assert scores["validation"]["accuracy"] == best.value and scores["recorded"]["difference"] == 0
    assert (config.parent / "out" / "best.keras").read_bytes() == (config.parent / "best-stored.keras").read_bytes()
    assert main(["train", str(config), "--from-stored", "--epochs", "3"]) == 2
    assert capsys.readouterr().err == (
        "error: --from-stored evaluates the model the search kept, as it is; leave out --epochs\n"
    )


def test_a_trial_whose_model_was_not_kept_says_which_were(tiny_study: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study)
    kept = [m.number for m in kept_models(study)]
    (dropped,) = {t.number for t in study.get_trials()} - set(kept)
    result = search_cli(
        "export", "--storage", tiny_study, "--trial", str(dropped), "--model", str(tmp_path / "m.keras")
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: trial {dropped} of study '{TINY_STUDY}' has no kept model (a study keeps those of its best "
        f"--keep-models complete trials; trials {', '.join(map(str, kept))} have one); export one of those with "
        "--trial, or retrain it: make train CONFIG=... (the YAML export)"
    )
    assert not (tmp_path / "m.keras").exists()
    exported = export_trial(tiny_study, TINY_STUDY, dropped)
    write_yaml(exported, tmp_path / "dropped.yaml")
    with pytest.raises(UserError, match="names no kept model"):
        evaluate_stored(tmp_path / "dropped.yaml")
