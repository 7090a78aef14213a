"""A model's costs as objectives: its trainable parameters, and its inference latency measured on this machine."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from search._keras import keras

IMAGES = 1_000  # latency is the time of one batch of this many images: milliseconds per 1,000 images
# The first calls compile the prediction function (and warm the caches); what follows is timed.
WARM_UP = 2
# The median of several timed calls: one call may be slowed by whatever else the CPU runs.
RUNS = 7


def trainable_params(model: keras.Model) -> int:
    """The `params` objective: weights training changes (batch norm's moving statistics are not among them)."""
    return sum(math.prod(variable.shape) for variable in model.trainable_variables)


def latency_ms(model: keras.Model, images: np.ndarray) -> float:
    """The `latency` objective: the median milliseconds `model` takes to predict 1,000 of `images` at once.

    `images` is repeated up to 1,000 when there are fewer (a tiny validation split), so every
    trial is timed on the same amount of work.
    """
    batch = np.resize(images, (IMAGES, *images.shape[1:]))
    for _ in range(WARM_UP):
        model.predict_on_batch(batch)
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        seconds.append(time.perf_counter() - start)
    return round(1000 * statistics.median(seconds), 3)
