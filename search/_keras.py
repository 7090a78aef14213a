"""Imports Keras once, on TensorFlow, and shares GPUs politely.

Importing this module changes nothing else about the process: the command line imports it
through `search.process.import_tensorflow_quietly`, which hides TensorFlow's start-up chatter.
"""

from __future__ import annotations

import functools
import os

# The models are TensorFlow's, whatever ~/.keras/keras.json says; Keras reads this once, at its import.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf

from search.process import stderr_silenced


@functools.cache
def share_gpus() -> None:
    """Let several processes share a GPU: each takes memory as it needs it, not all at start.

    The trainer calls this before its first op, never at import: the search driver imports
    TensorFlow but must not initialise CUDA, or the trial processes it forks (search/forked.py)
    could not use the GPU.
    """
    with stderr_silenced():  # looking for GPUs prints CUDA notices (on machines without one too)
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
