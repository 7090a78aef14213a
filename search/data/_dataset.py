"""`Dataset`: a dataset split for the search (train, validation, test), whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from search.data._cache import Arrays


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Dataset:
    """A dataset split for the search: only `search train` may touch the test arrays."""

    name: str  # what it is: mnist
    x_train: np.ndarray  # uint8 images (N, H, W)
    y_train: np.ndarray  # integer labels 0 .. n_classes-1
    x_val: np.ndarray  # the validation split: the search's only score
    y_val: np.ndarray
    x_test: np.ndarray  # the final evaluation, never the search
    y_test: np.ndarray
    n_classes: int
    checksum: str  # short id of the contents, recorded with every trial and retrain
    source: str = ""  # the file the arrays were read from: the cache

    def subset(self, n_examples: int) -> Dataset:
        """The first `n_examples` training examples only (0 = all); validation and test stay whole."""
        if not n_examples:
            return self
        return replace(self, x_train=self.x_train[:n_examples], y_train=self.y_train[:n_examples])


def validation_size(n_train: int) -> int:
    """Examples held out of the training arrays for validation: the last sixth (MNIST's classic 10,000 of 60,000)."""
    return n_train // 6


def split(name: str, arrays: Arrays, *, n_classes: int, checksum: str, source: str) -> Dataset:
    """The arrays as a Dataset: `x_val`/`y_val` when given, else the last sixth of the training arrays."""
    x, y = arrays["x_train"], arrays["y_train"]
    if "x_val" in arrays:
        x_train, y_train, x_val, y_val = x, y, arrays["x_val"], arrays["y_val"]
    else:
        n_train = len(x) - validation_size(len(x))
        x_train, y_train, x_val, y_val = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        n_classes=n_classes,
        checksum=checksum,
        source=source,
    )
