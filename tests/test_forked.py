"""Each trial in a forked child: answers and exceptions come back, and a killed child fails only its trial."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import LIMIT, TINY_RUN, epochs_reported, start_search, stop, trials_of, wait_for
from optuna.trial import TrialState

from search.errors import UserError
from search.forked import ChildDied, Forked


def test_the_child_s_answer_comes_back_from_another_process() -> None:
    assert Forked(os.getpid).result() != os.getpid()


def test_the_child_s_exception_is_raised_in_the_parent() -> None:
    def refuse() -> None:
        raise UserError("no such space")

    with pytest.raises(UserError, match="no such space"):
        Forked(refuse).result()


def test_a_child_killed_by_a_signal_is_reported_as_such() -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(ChildDied, match="killed by SIGKILL"):
        Forked(die).result()


def test_a_trial_whose_process_is_killed_fails_with_the_reason_and_the_search_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    # The reference network (TINY_RUN's space) for 8 epochs: once the first is reported, 7 more leave
    # ample time to kill the trial mid-training (the wait polls far more often than an epoch lasts),
    # and the trial after it is no larger.
    args = ("--backend", "random", "--pruner", "none", "--epochs", "8", "--trials", "1", "--no-baseline")
    parent = start_search("run", *TINY_RUN, *args, "--study", "k", "--storage", url)
    try:
        child = wait_for(lambda: _trial_process_of(parent.pid), "the search forking a trial process", alive=parent)
        wait_for(lambda: epochs_reported(db, 0), "trial 0 reporting its first epoch", alive=parent)
        os.kill(child, signal.SIGKILL)
        output, _ = parent.communicate(timeout=LIMIT)
    finally:
        stop(parent)
    assert parent.returncode == 0, output
    trials = trials_of(url, "k")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "its process was killed by SIGKILL"
    assert 1 <= len(trials[0].intermediate_values) < 8
    assert "done: 1 complete, 0 pruned, 1 failed trials" in output


def _trial_process_of(parent: int) -> int | None:
    """The pid of a child `parent` forked (for its first trial), if there is one yet.

    A fork has its parent's command line; other children (pip fetching MNIST) have their own.
    """
    try:
        command = Path(f"/proc/{parent}/cmdline").read_bytes()
    except FileNotFoundError:  # it has ended; the caller says how
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                forked = (entry / "cmdline").read_bytes() == command
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == parent and forked:
                return int(entry.name)
    return None
