"""Process-wide settings: each set by the command line (`cli.main`) or inside a scoped context manager, never at import.

Importing a module of this project changes nothing about the process; what a command changes
for its own run (a log level, a signal handler, where file descriptor 2 goes) is set here.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_optuna() -> None:
    """The driver's trial lines say what happened; Optuna's own logs would repeat it, with a traceback
    for every trial the driver fails on purpose (diverged, interrupted, surplus). For the command line."""
    import optuna  # here: `search train` never needs it

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras (search._keras) with their start-up chatter hidden; for the command line.

    TensorFlow writes its CPU-feature, oneDNN and CUDA notices straight to file descriptor 2
    before its logging is configured, so no environment variable silences them all; they would
    bury the search's own output. Errors still surface: they are Python exceptions, not prints.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_silenced():
        importlib.import_module("search._keras")
    # Retracing notices are expected: every trial compiles a model of a new shape.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block (prints of C++ code included), and comes back."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM stop the search as Ctrl-C does (the running trial is recorded as failed).

    SIGINT too, because a process started with SIGINT ignored (a background job of a
    non-interactive shell, some test runners' workers) inherits that, and Python then leaves it
    ignored: a benchmark's or a supervisor's SIGINT would be lost and the search run on.
    """
    previous = {number: signal.signal(number, _interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
