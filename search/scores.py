"""The scores file `search train` writes beside the model: what was trained and tested, and how it printed.

One JSON object per run (`<stem>.scores.json`): the run's settings, the saved model's loss and
accuracy on the validation and test images, the training that made it (or the kept model it
tested instead), the trial's recorded objective beside the retrained one, and the provenance
(data, library versions, time). `report_lines` turns it into what the command prints.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search.config import OBJECTIVES, TrialConfig
from search.configfile import ConfigFile
from search.data import Dataset
from search.errors import UserError
from search.spec import library_versions
from search.train import TrialResult


def output_paths(config_path: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Where `search train CONFIG` writes the model and the scores: `<stem>.keras`, `<stem>.scores.json`."""
    folder = out_dir if out_dir is not None else config_path.parent
    return folder / f"{config_path.stem}.keras", folder / f"{config_path.stem}.scores.json"


def write_scores(scores: dict[str, Any], path: Path) -> None:
    try:
        path.write_text(json.dumps(scores, indent=2) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror}); pick another --out-dir") from None


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


def score_file(
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
    """The scores file: the run's settings, the model's numbers, the `training` that made it (`retrained`)."""
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


def retrained(result: TrialResult, data: Dataset, subset_size: int, full_train: bool) -> dict[str, Any]:
    """The `training` part of the scores of a model trained here."""
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
