"""Imports Keras once, with TensorFlow's start-up chatter hidden and GPUs shared politely.

TensorFlow writes its CPU-feature, oneDNN and CUDA notices straight to file descriptor 2
before its logging is configured, so no environment variable silences them; they would bury
the search's own output. Errors still surface: they are Python exceptions, not prints.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextmanager
def _stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _stderr_silenced():
    import keras
    import tensorflow as tf

    # Retracing notices are expected: every trial compiles a model of a new shape.
    tf.get_logger().setLevel("ERROR")


@functools.cache
def share_gpus() -> None:
    """Let several processes share a GPU: each takes memory as it needs it, not all at start.

    The trainer calls this before its first op, never at import: the search driver imports
    TensorFlow but must not initialise CUDA, or the trial processes it forks (search/forked.py)
    could not use the GPU.
    """
    with _stderr_silenced():  # looking for GPUs prints CUDA notices (on machines without one too)
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)


def runtime_started() -> bool:
    """Whether this process has started TensorFlow's runtime (run an op, built a model).

    A process forked after that inherits a runtime whose threads did not come along, and hangs
    in its first op; search/forked.py forks only before.
    """
    from tensorflow.python.eager import context  # no public API tells; `_initialized` since TF 2.0

    return context.context()._initialized


__all__ = ["keras", "runtime_started", "share_gpus", "tf"]
