"""`Dataset`: a dataset split for the search, whatever its kind, and `Inputs`: what the model needs to know of it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from search.data._cache import Arrays


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Inputs:
    """What `search.model.build_model` needs of a dataset: one example's shape and kind, and the classes."""

    shape: tuple[int, ...]  # one example: (H, W) or (H, W, C) for images, anything for features
    n_classes: int
    images: bool  # uint8 images, scaled by 1/255 and open to augmentation; else float features, normalized
    mean: np.ndarray | None = None  # features only: each feature's mean and variance over the training split
    variance: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split for the search: only `search train` may touch the test arrays."""

    name: str  # as --dataset names it and a study records it: mnist, fashion-mnist, npz:/absolute/path.npz
    x_train: np.ndarray  # uint8 images (N, H, W[, C]) or float32 features (N, ...)
    y_train: np.ndarray  # integer labels 0 .. n_classes-1
    x_val: np.ndarray  # the validation split: the search's only score
    y_val: np.ndarray
    x_test: np.ndarray  # the final evaluation, never the search
    y_test: np.ndarray
    n_classes: int  # fixed by the whole training split: a subset missing a class keeps every output
    checksum: str  # short id of the contents, recorded with every trial and retrain
    source: str = ""  # the file the arrays were read from: the cache, or the user's .npz

    @property
    def images(self) -> bool:
        """uint8 images (scaled, augmentable), not float features."""
        return self.x_train.dtype == np.uint8

    @property
    def examples(self) -> str:
        """What one example is called in messages."""
        return "images" if self.images else "examples"

    def subset(self, n_examples: int) -> Dataset:
        """The first `n_examples` training examples only (0 = all); validation and test stay whole."""
        if not n_examples:
            return self
        return replace(self, x_train=self.x_train[:n_examples], y_train=self.y_train[:n_examples])

    @cached_property
    def inputs(self) -> Inputs:
        """The model's view of the data; a features dataset's statistics are of this (sub)set's training split."""
        shape, n_classes = tuple(self.x_train.shape[1:]), self.n_classes
        if self.images:
            return Inputs(shape, n_classes, images=True)
        flat = self.x_train.reshape(len(self.x_train), -1).astype(np.float64)
        mean, variance = (stat.astype(np.float32) for stat in (flat.mean(axis=0), flat.var(axis=0)))
        return Inputs(shape, n_classes, images=False, mean=mean, variance=variance)


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
