"""Worker processes on one machine: `search run --workers N` runs N `search worker` processes on one study.

Processes, not threads: TensorFlow in threads would share one runtime. Every worker is the same
command a user starts by hand on another machine, so one machine and many behave alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TextIO

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


def worker_command(*, study: str, storage: str, n_trials: int, timeout: float | None) -> list[str]:
    """The `search worker` command line that joins `study` and works until it holds `n_trials` finished trials."""
    command = [sys.executable, "-m", "search", "worker", "--study", study, "--storage", storage]
    command += ["--trials", str(n_trials)]
    return command + (["--timeout", repr(timeout / 60)] if timeout else [])


def run_workers(*, study: str, storage: str, n_trials: int, timeout: float | None, workers: int) -> int:
    """Run `workers` worker processes on `study` until it holds `n_trials` finished trials; wait for all.

    Their output is relayed line by line, each line prefixed with `[worker k]`. Ctrl-C or SIGTERM
    here is passed on to every worker, which records its running trial as failed and stops.
    Returns 0 when every worker finished cleanly, else the status of the first that did not
    (128 + the signal's number for a killed one).
    """
    command = worker_command(study=study, storage=storage, n_trials=n_trials, timeout=timeout)
    processes: list[subprocess.Popen] = []
    # Installed first: a Ctrl-C from here on reaches every worker started.
    previous = {number: signal.signal(number, _forwarder(processes)) for number in _FORWARDED}
    try:
        processes += [_start(command) for _ in range(workers)]
        # The command itself is not shown: its storage URL may hold a password.
        print(
            f"started {workers} processes of `search worker --study {study}`; their lines start [worker k]", flush=True
        )
        lock = threading.Lock()
        relays = [
            threading.Thread(target=_relay, args=(process.stdout, f"[worker {k}] ", lock), daemon=True)
            for k, process in enumerate(processes, 1)
        ]
        for relay in relays:
            relay.start()
        statuses = [process.wait() for process in processes]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for relay in relays:
        relay.join()
    return _verdict(statuses)


def _start(command: list[str]) -> subprocess.Popen:
    """One worker, in a session of its own: a Ctrl-C in the terminal reaches it once, through us, not twice."""
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def _relay(stream: TextIO, prefix: str, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(prefix + line)
            sys.stdout.flush()


def _forwarder(processes: Sequence[subprocess.Popen]) -> Callable[[int, object], None]:
    def forward(number: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(number)

    return forward


def _verdict(statuses: Sequence[int]) -> int:
    """0 if every worker exited cleanly; else a line per worker that did not, and the first one's status."""
    failed = [(k, status) for k, status in enumerate(statuses, 1) if status]
    for k, status in failed:
        how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        print(f"worker {k} {how}; trials it finished are kept", file=sys.stderr, flush=True)
    if not failed:
        return 0
    status = failed[0][1]
    return 128 - status if status < 0 else status
