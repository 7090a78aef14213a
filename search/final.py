"""The final retrain of a config file (`search train`): train it, save the `.keras` model, test it once.

This is the only module that touches the test images: the search never sees them, so the
test accuracy printed here is an honest estimate for a config chosen on validation accuracy.
`--from-stored` tests the model the search kept for the config's trial instead (search/kept.py):
no retrain, so the validation score is the trial's own, to the last digit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from search._keras import keras
from search.artifacts import ModelStore
from search.config import TrialConfig
from search.configfile import read_yaml
from search.data import Dataset, load_dataset
from search.errors import UserError
from search.kept import write_model
from search.scores import output_paths, retrained, score_file, write_scores
from search.spec import DEFAULT_DATASET, IMPLIED
from search.train import train

# Evaluation batch: large for speed; the metrics do not depend on it beyond float rounding.
EVAL_BATCH = 1000


def retrain(
    config_path: Path,
    *,
    full_train: bool = False,
    out_dir: Path | None = None,
    subset_size: int = 0,
    epochs: int = 0,
    dataset: str | None = None,
    data: Dataset | None = None,
) -> dict[str, Any]:
    """Train the config in `config_path`, save it, evaluate the saved file once on the test set.

    Args:
        full_train: train on the training and validation images (the validation score is then not fair).
        out_dir: folder for the model and scores (default: the config file's folder).
        subset_size: train on the first N training images only (quick looks); 0 = all 50,000.
        epochs: train this many epochs instead of the config's (its schedule stretched to them); 0 = the config's.
        dataset: the data to train and test on, as `--dataset` names it (default: the one the file's
            provenance names, else MNIST); it must be the data the file's trial trained on.
        data: the split itself, already loaded (tests); `dataset` is then not read.

    Returns:
        The scores, also written as JSON next to the model.
    """
    exported = read_yaml(config_path)
    config = exported.config.replace(epochs=epochs) if epochs else exported.config
    model_path, scores_path = output_paths(config_path, out_dir)
    _check_writable(model_path.parent)
    data = data if data is not None else _load(exported.provenance, dataset, config_path)
    _check_fits(config, data, config_path, subset_size)
    result = train(config, data.subset(subset_size), [_EpochLine()], save_model=model_path, full_train=full_train)
    if result.diverged:
        model_path.unlink(missing_ok=True)
        raise UserError(
            f"training diverged: the loss became NaN at epoch {result.epochs_run}; "
            f"lower learning_rate in {config_path} (or export another trial)"
        )
    measured = evaluate_saved(model_path, data)
    training = retrained(result, data, subset_size, full_train)
    scores = score_file(exported, config, training, measured, config_path, model_path, full_train, subset_size, data)
    write_scores(scores, scores_path)
    return scores


def evaluate_stored(
    config_path: Path, *, out_dir: Path | None = None, dataset: str | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Evaluate the model the search kept for the config's trial once on the test set, without retraining.

    The model is copied out of the study's store to where `retrain` would save one, and scored
    like a retrained one, on the data the trial trained on (`dataset`, `data`: as `retrain` takes
    them); the scores say `from_stored`. Returns the scores, also written as JSON.
    """
    exported = read_yaml(config_path)
    origin, model = exported.provenance, exported.provenance.get("stored_model")
    if not model:
        raise UserError(
            f"{config_path} names no kept model (its trial's model was not kept, or it was exported before models "
            "were); retrain it without --from-stored, or export a trial whose model was kept"
        )
    model_path, scores_path = output_paths(config_path, out_dir)
    _check_writable(model_path.parent)
    data = data if data is not None else _load(origin, dataset, config_path)
    store = ModelStore(model["store"], origin["study"])
    write_model(store, model["artifact_id"], model_path, fix="retrain the config without --from-stored")
    measured = evaluate_saved(model_path, data)
    subset = origin.get("subset") or 0
    training = {
        "trained_on": f"{subset or len(data.y_train):,} training {data.examples}",
        "from_stored": store.where + model["artifact_id"],
        **{key: origin.get(key) for key in ("best_epoch", "epochs_run", "param_count")},
        "seconds": 0.0,
        "history": {},
    }
    config = exported.config
    scores = score_file(exported, config, training, measured, config_path, model_path, False, subset, data)
    write_scores(scores, scores_path)
    return scores


def evaluate_saved(model_path: Path, data: Dataset) -> dict[str, dict[str, float]]:
    """Loss and accuracy of the saved model file on the validation and the test images.

    The file is loaded back (safe mode: no code from the file runs), so the numbers are what
    the file gives, not what the training process held in memory.
    """
    model = keras.saving.load_model(model_path, safe_mode=True)
    try:
        scores = {}
        for split, x, y in (("validation", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
            values = model.evaluate(x, y, batch_size=EVAL_BATCH, verbose=0, return_dict=True)
            scores[split] = {"accuracy": float(values["accuracy"]), "loss": float(values["loss"])}
        return scores
    finally:
        keras.backend.clear_session(free_memory=True)


def _load(provenance: dict[str, Any], dataset: str | None, config_path: Path) -> Dataset:
    """The data to retrain on: `dataset`, else the one the file's provenance names, else MNIST; the data
    the file's trial trained on, as its recorded checksum says, or a UserError."""
    name, checksum = _trained_on(provenance)
    data = load_dataset(dataset or name or DEFAULT_DATASET)
    if checksum and data.checksum != checksum:
        fix = (
            "leave out --dataset to train on it" if dataset else "restore that data, or say where it is with --dataset"
        )
        raise UserError(
            f"{config_path}'s trial trained on {name} (dataset {checksum}), not on {data.name} "
            f"(dataset {data.checksum}); {fix}"
        )
    return data


def _trained_on(provenance: dict[str, Any]) -> tuple[str | None, str | None]:
    """The name and checksum of the data an exported file's trial trained on; (None, None) for a hand-made file.

    Files exported before datasets had names hold only the checksum, under `dataset`: they were all MNIST.
    """
    if "dataset_checksum" in provenance:
        return provenance.get("dataset"), provenance["dataset_checksum"]
    if "dataset" in provenance:
        return IMPLIED["dataset"], provenance["dataset"]
    return None, None


def _check_fits(config: TrialConfig, data: Dataset, config_path: Path, subset_size: int) -> None:
    """Refuses, before any training, a --subset larger than the data and augmentation of features."""
    if not 0 <= subset_size <= len(data.y_train):
        raise UserError(f"--subset must be 0 (all) to {len(data.y_train)}, got {subset_size}")
    if config.augmentation() and not data.images:
        raise UserError(
            f"{config_path} augments images ({', '.join(config.augmentation())}), but {data.name} holds features, "
            "not images; set those keys to 0"
        )


class _EpochLine(keras.callbacks.Callback):
    """One line per epoch on stderr, so a long retrain shows it is alive."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        print(
            f"epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, "
            f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}",
            file=sys.stderr,
            flush=True,
        )


def _check_writable(folder: Path) -> None:
    """Fails before minutes of training, not after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {folder} ({error.strerror}); pick another --out-dir") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write in {folder}; pick another --out-dir")
