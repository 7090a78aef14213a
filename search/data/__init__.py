"""The datasets a search trains on: `--dataset` names one, `load_dataset` returns it verified and split.

Three kinds: `mnist`, the default (_mnist.py); `fashion-mnist`, or `fashion-mnist:FOLDER` to read it
from a folder of its four files (_fashion.py); `npz:PATH`, the user's own arrays (_npz.py). The
public ones are kept, verified, in the data cache (_cache.py), which follows the user rather than
the current folder. Each lands in a `Dataset` (_dataset.py), whose `inputs` tell the model its
shape, classes and scaling.
"""

from __future__ import annotations

import os
from pathlib import Path

from search.data._cache import data_dir
from search.data._dataset import Dataset, Inputs
from search.data._fashion import NAME as FASHION_MNIST
from search.data._fashion import load_fashion
from search.data._mnist import INPUTS as MNIST_INPUTS
from search.data._mnist import NAME as MNIST
from search.data._mnist import fetch, load_mnist
from search.data._npz import PREFIX as NPZ
from search.data._npz import load_npz
from search.errors import UserError

__all__ = [
    "FASHION_MNIST",
    "KINDS",
    "MNIST",
    "MNIST_INPUTS",
    "Dataset",
    "Inputs",
    "data_dir",
    "dataset_name",
    "fetch",
    "load_dataset",
    "load_mnist",
    "title",
]

KINDS = f"{MNIST}, {FASHION_MNIST}, {FASHION_MNIST}:FOLDER, {NPZ}PATH"
_TITLES = {MNIST: "MNIST", FASHION_MNIST: "Fashion-MNIST"}


def dataset_name(text: str) -> str:
    """`text` as `--dataset` takes it, spelled one way (a path made absolute), or a UserError listing the kinds."""
    kind, colon, path = text.partition(":")
    if text in (MNIST, FASHION_MNIST):
        return text
    if colon and path and f"{kind}:" in (f"{FASHION_MNIST}:", NPZ):
        return f"{kind}:{os.path.abspath(os.path.expanduser(path))}"
    raise UserError(f"unknown dataset '{text}'; known: {KINDS}")


def load_dataset(text: str, cache_dir: Path | None = None) -> Dataset:
    """The dataset `text` names (any spelling `dataset_name` takes), verified and split.

    `cache_dir` is the data cache (default: `data_dir()`). A Fashion-MNIST read from a named folder
    is `fashion-mnist` all the same: the folder is where it came from, not what it is.
    """
    kind, _, path = dataset_name(text).partition(":")
    if kind == MNIST:
        return load_mnist(cache_dir)
    if kind == FASHION_MNIST:
        return load_fashion(Path(path) if path else None, cache_dir)
    return load_npz(Path(path))


def title(name: str) -> str:
    """How prose names a dataset: MNIST, Fashion-MNIST, or an .npz file's name."""
    return _TITLES.get(name) or Path(name.removeprefix(NPZ)).name
