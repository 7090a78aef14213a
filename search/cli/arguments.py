"""Argument types and options shared by the commands: each checks and spells its value one way as it is parsed."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from search.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """Bad flags end in one line naming the problem (and where to look), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def path(text: str) -> Path:
    return Path(text)


def dataset(text: str) -> str:
    from search.data import dataset_name

    try:
        return dataset_name(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def objective(text: str) -> str:
    """`--objective`, checked and spelled one way (no spaces), so a study's identity compares alike."""
    from search.spec import objectives_of

    try:
        return ",".join(objectives_of(text))
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def minutes(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be 0 or more minutes, got {text}")
    return value


def add_storage(parser: argparse.ArgumentParser) -> None:
    from search.storage import DEFAULT_STORAGE

    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default: %(default)s)")


def add_dataset(parser: argparse.ArgumentParser, what: str, *, default: str | None) -> None:
    """`--dataset`, checked and spelled one way (search.data.dataset_name) as it is parsed; `what` says its use."""
    from search.data import KINDS

    parser.add_argument("--dataset", type=dataset, default=default, help=f"{KINDS}: {what}")
