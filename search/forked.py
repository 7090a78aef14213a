"""Work in a forked child process: each trial trains in one, so a long search's memory stays flat.

TensorFlow keeps every XLA program it compiles until its process ends, about 30 MB a trial on
this project's models (bench/memory.py), and Keras's `clear_session` does not free them. A child
forked for a trial takes them along when it exits. Forking is cheap: the driver has imported
TensorFlow and loaded the data, but never runs an op, so each child starts its own runtime
from a clean copy (and, on a GPU, its own CUDA context: the driver must never touch the GPU).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_FORK = multiprocessing.get_context("fork")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def scratch_folder(owner: object, prefix: str) -> Path:
    """A new temporary folder that the trials' forked processes write into, removed with `owner` by its maker only."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    weakref.finalize(owner, _remove_scratch, folder, os.getpid())
    return folder


def _remove_scratch(folder: Path, maker: int) -> None:
    if os.getpid() == maker:  # a forked process shares the folder and runs its finalizers too
        shutil.rmtree(folder, ignore_errors=True)


class ChildDied(Exception):
    """The child ended without an answer: killed by a signal (the out-of-memory killer, say)."""


class Forked(Generic[T]):
    """`task()` running in a forked child; `result()` waits for its return value or its exception.

    With `serve`, the child runs `task(ask)` and may call `ask(request)` on the way: the request
    comes here, where `serve(request)` answers it while `result()` waits (so the trial loop records
    and judges each epoch of a trial whose process never touches the study). The child runs in a
    process group of its own, so a Ctrl-C in the terminal reaches it once, forwarded from here,
    and not twice; it dies with this process if this one is killed.
    """

    def __init__(self, task: Callable[..., T], serve: Callable[[Any], Any] | None = None) -> None:
        here, there = _FORK.Pipe()
        # Not a daemon: at exit, multiprocessing waits for a child still ending its trial instead of killing it.
        self.process = _FORK.Process(target=_child, args=(task, serve is not None, there, os.getpid()))
        self.process.start()
        there.close()
        self.channel, self.serve = here, serve

    def result(self) -> T:
        """The task's return value; its exception is raised here (KeyboardInterrupt included)."""
        try:
            while True:
                kind, value = self.channel.recv()
                if kind == _ASK:
                    self.channel.send(self.serve(value))
                    continue
                break
        except EOFError:
            self.process.join()
            code = self.process.exitcode
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            raise ChildDied(f"its process {how}") from None
        except BaseException:
            # Ctrl-C or SIGTERM here, or `serve` failed: the child stops too, and ends.
            if self.process.is_alive():
                os.kill(self.process.pid, signal.SIGINT)
            self.process.join()
            raise
        finally:
            self.channel.close()
        self.process.join()
        if kind == _RETURNED:
            return value
        raise value


_ASK, _RETURNED, _RAISED = "ask", "returned", "raised"


def _child(task: Callable[..., Any], asks: bool, channel: Connection, parent: int) -> None:
    os.setpgid(0, 0)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def ask(request: Any) -> Any:
        channel.send((_ASK, request))
        return channel.recv()

    try:
        channel.send((_RETURNED, task(ask) if asks else task()))
    except BaseException as error:  # every exception goes back to the parent, which raises it
        try:
            channel.send((_RAISED, error))
        except Exception:  # an exception that cannot be pickled still tells what happened
            channel.send((_RAISED, RuntimeError(f"{type(error).__name__}: {error}")))
