"""The final retrain of a config file (`search train`): train it, save the `.keras` model, test it once.

This is the only module that touches the test images: the search never sees them, so the
test accuracy printed here is an honest estimate for a config chosen on validation accuracy.
`--from-stored` tests the model the search kept for the config's trial instead (search/kept.py):
no retrain, so the validation score is the trial's own, to the last digit.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search._keras import keras
from search.artifacts import ModelStore
from search.config import OBJECTIVES, TrialConfig
from search.configfile import ConfigFile, read_yaml
from search.data import Dataset, load_dataset
from search.errors import UserError
from search.kept import write_model
from search.spec import DEFAULT_DATASET, IMPLIED, library_versions
from search.train import TrialResult, train

# Evaluation batch: large for speed; the metrics do not depend on it beyond float rounding.
EVAL_BATCH = 1000


def output_paths(config_path: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Where `search train CONFIG` writes the model and the scores: `<stem>.keras`, `<stem>.scores.json`."""
    folder = out_dir if out_dir is not None else config_path.parent
    return folder / f"{config_path.stem}.keras", folder / f"{config_path.stem}.scores.json"


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
    training = _training(result, data, subset_size, full_train)
    scores = _scores(exported, config, training, measured, config_path, model_path, full_train, subset_size, data)
    _write_scores(scores, scores_path)
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
    scores = _scores(exported, config, training, measured, config_path, model_path, False, subset, data)
    _write_scores(scores, scores_path)
    return scores


def _write_scores(scores: dict[str, Any], path: Path) -> None:
    try:
        path.write_text(json.dumps(scores, indent=2) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror}); pick another --out-dir") from None


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


def report_lines(scores: dict[str, Any]) -> list[str]:
    """What `search train` prints: what was trained, validation vs the trial's record, the test score."""
    val, test, recorded = scores["validation"], scores["test"], scores["recorded"]
    trained = f"{scores['epochs_run']} epoch(s), best epoch {scores['best_epoch']} (its weights are kept)"
    if scores["from_stored"]:
        first = (
            f"not retrained (--from-stored): trial {recorded['trial']}'s model as the search kept it, "
            f"{scores['from_stored']}; trained there on {scores['trained_on']}: {trained}"
        )
    else:
        first = f"trained on {scores['trained_on']}: {trained}"
    seconds = "" if scores["from_stored"] else f", {scores['seconds']:.0f}s"
    lines = [f"{first}, {scores['param_count']:,} parameters{seconds}"]
    line = f"validation accuracy {val['accuracy']:.4f} (loss {val['loss']:.4f})"
    if scores["full_train"]:
        line += ": not a fair number, --full-train trained on these images"
    elif recorded:
        line += f"; trial {recorded['trial']} recorded {recorded['objective']} {recorded['value']:.4f}"
        line += f" (difference {recorded['difference']:+.4f})" if recorded["comparable"] else f" ({recorded['note']})"
    lines.append(line)
    lines.append(f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}): the search never saw the test set")
    if scores["epochs"] != scores["config_epochs"]:
        lines.append(
            f"--epochs {scores['epochs']}: the config (the trial) says {scores['config_epochs']} epochs; "
            "this run trained up to the new number, its learning-rate schedule stretched to them"
        )
    lines.append(f"wrote {scores['model']} and {scores['scores']}")
    return lines


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


def _scores(
    exported: ConfigFile,
    config: TrialConfig,
    training: dict[str, Any],
    measured: dict[str, dict[str, float]],
    config_path: Path,
    model_path: Path,
    full_train: bool,
    subset_size: int,
    data: Dataset,
) -> dict[str, Any]:
    """The scores file: the run's settings, the model's numbers, the `training` that made it (`_training`)."""
    epochs = (exported.config.epochs, config.epochs)
    return {
        "config_file": str(config_path),
        "model": str(model_path),
        "scores": str(output_paths(config_path, model_path.parent)[1]),
        "full_train": full_train,
        "subset": subset_size,
        **measured,
        "recorded": _recorded(exported.provenance, measured["validation"], full_train, subset_size, epochs),
        "epochs": config.epochs,  # what this run planned: the config's, or --epochs
        "config_epochs": exported.config.epochs,  # the config file's (the trial's) own
        **training,
        "dataset": data.name,
        "dataset_checksum": data.checksum,
        "versions": library_versions(),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
    }


def _training(result: TrialResult, data: Dataset, subset_size: int, full_train: bool) -> dict[str, Any]:
    n_examples = (subset_size or len(data.y_train)) + (len(data.y_val) if full_train else 0)
    split = f"training + validation {data.examples}" if full_train else f"training {data.examples}"
    return {
        "trained_on": f"{n_examples:,} {split}",
        "from_stored": None,  # retrained here, not the model the search kept
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "param_count": result.params,
        "seconds": round(result.seconds, 2),
        "history": result.history,
    }


def _recorded(
    provenance: dict[str, Any],
    validation: dict[str, float],
    full_train: bool,
    subset_size: int,
    epochs: tuple[int, int],
) -> dict[str, Any] | None:
    """The trial's recorded objective next to the retrained one, and whether the two are comparable.

    `epochs` is (the trial's, this run's): a run of other length is a different experiment.
    """
    objective, value = provenance.get("objective"), provenance.get("value")
    if objective not in OBJECTIVES or not isinstance(value, (int, float)):
        return None
    retrained = validation[objective.removeprefix("val_")]
    study_subset = provenance.get("subset")  # None: the study did not record it
    note = ""
    if full_train:
        note = "not comparable: --full-train also trained on the validation images"
    elif study_subset is not None and study_subset != subset_size:
        note = (
            f"not comparable: the study trained on {study_subset or 'all'} images, this run on {subset_size or 'all'}"
        )
    elif epochs[0] != epochs[1]:
        note = f"not comparable: the trial trained up to {epochs[0]} epochs, this run {epochs[1]} (--epochs)"
    return {
        "study": provenance.get("study"),
        "trial": provenance.get("trial"),
        "objective": objective,
        "value": value,
        "retrained": retrained,
        "difference": retrained - value,
        "comparable": not note,
        "note": note,
    }
