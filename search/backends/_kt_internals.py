"""Every touch of Keras Tuner's private API, in one place.

Keras Tuner has had no release of substance since 2024, and its oracles expose no public way to
place their files, to lay out a state for them to reload, to see the trials a reload queued for
a retry, or to read Hyperband's brackets. pyproject.toml pins keras-tuner 1.4;
tests/test_kt_internals.py fails on a version that changes any of this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORACLE_FILE = "oracle.json"
TRIAL_FILE = "trial.json"


def place(oracle: Any, folder: Path) -> None:
    """Keep the oracle's files in `folder` (what Keras Tuner's own tuner does to place them)."""
    oracle._set_project_dir(str(folder.parent), folder.name)


def write_folder(folder: Path, oracle_state: dict[str, Any], trials: dict[str, dict[str, Any]]) -> None:
    """Lay out an oracle's state (`get_state()`) and its trials' as its `reload()` reads them from `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for kt_id, trial in trials.items():
        (folder / f"trial_{kt_id}").mkdir(exist_ok=True)
        (folder / f"trial_{kt_id}" / TRIAL_FILE).write_text(json.dumps(trial))
    (folder / ORACLE_FILE).write_text(json.dumps(oracle_state))


def read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The oracle state and trials an oracle saved in `folder`, or None where it saved none."""
    if not (folder / ORACLE_FILE).exists():
        return None
    trials = {}
    for path in folder.glob(f"trial_*/{TRIAL_FILE}"):
        trial = json.loads(path.read_text())
        trials[trial["trial_id"]] = trial
    return json.loads((folder / ORACLE_FILE).read_text()), trials


def retry_queue(oracle: Any) -> list[str]:
    """The ids of the trials the oracle will hand out again (a reload queues every unfinished one)."""
    return oracle._retry_queue


def brackets(oracle: Any) -> list[dict[str, Any]]:
    """Hyperband's brackets: each a dict with `bracket_num` and `rounds` (lists of {"id", "past_id"})."""
    return oracle._brackets


def round_size(oracle: Any, bracket_num: int, round_num: int) -> int:
    """How many trials round `round_num` of Hyperband bracket `bracket_num` holds when full."""
    return oracle._get_size(bracket_num, round_num)
