"""Shared fixtures: the real MNIST split and a tiny slice of it for fast training tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from search.data import DATA_DIR, Mnist, load_mnist

REPO = Path(__file__).resolve().parents[1]

# Big enough for a one-hidden-layer MLP to learn in two epochs, small enough for ~2 s of training.
TINY_TRAIN = 2_000
TINY_VAL = 500


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    """The real split from the default cache (repo's data/); the first run fetches it."""
    return load_mnist(REPO / DATA_DIR)


@pytest.fixture(scope="session")
def tiny_mnist(mnist: Mnist) -> Mnist:
    """The first 2,000 training and 500 validation images of the real split (test set untouched)."""
    return dataclasses.replace(
        mnist,
        x_train=mnist.x_train[:TINY_TRAIN],
        y_train=mnist.y_train[:TINY_TRAIN],
        x_val=mnist.x_val[:TINY_VAL],
        y_val=mnist.y_val[:TINY_VAL],
    )
