"""Imports Keras once, with TensorFlow's start-up chatter hidden and GPUs shared politely.

TensorFlow writes its CPU-feature, oneDNN and CUDA notices straight to file descriptor 2
before its logging is configured, so no environment variable silences them; they would bury
the search's own output. Errors still surface: they are Python exceptions, not prints.
"""

from __future__ import annotations

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

    # Several workers may share one GPU: each takes memory as it needs it, not all at start.
    for _gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(_gpu, True)

__all__ = ["keras"]
