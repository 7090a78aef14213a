"""Every touch of Keras Tuner's private API, in one place.

Keras Tuner has had no release of substance since 2024, and its oracles expose no public way to
place their files, to see the trials a reload queued for a retry, or to read Hyperband's
brackets. pyproject.toml pins keras-tuner 1.4; tests/test_kt_internals.py fails on a version
that changes any of this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def place(oracle: Any, folder: Path) -> None:
    """Keep the oracle's files in `folder` (what Keras Tuner's own tuner does to place them)."""
    oracle._set_project_dir(str(folder.parent), folder.name)


def retry_queue(oracle: Any) -> list[str]:
    """The ids of the trials the oracle will hand out again (a reload queues every unfinished one)."""
    return oracle._retry_queue


def brackets(oracle: Any) -> list[dict[str, Any]]:
    """Hyperband's brackets: each a dict with `bracket_num` and `rounds` (lists of {"id", "past_id"})."""
    return oracle._brackets


def round_size(oracle: Any, bracket_num: int, round_num: int) -> int:
    """How many trials round `round_num` of Hyperband bracket `bracket_num` holds when full."""
    return oracle._get_size(bracket_num, round_num)
