"""Many workers on one study: SQLite under concurrent writers, and a worker killed mid-trial.

The checks are functions so that tests/test_postgres.py runs the same ones against a real server.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.storage import GRACE_HEARTBEATS, open_storage

REPO = Path(__file__).resolve().parents[1]
# Tiny trials: the size space on 300 training images; validation still uses all 10,000 images.
TINY = ("--space", "size", "--subset", "300", "--timeout", "10")
HEARTBEAT = 2  # seconds; a killed worker's trial is retried after GRACE_HEARTBEATS of them
LIMIT = 400  # seconds a whole search may take on a loaded 2-core machine before the test gives up


def start_search(*args: str) -> subprocess.Popen:
    """`python -m search ARGS` in the background, stdout and stderr together."""
    command = [sys.executable, "-m", "search", *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(parent: subprocess.Popen) -> None:
    """End a `search run` left running by a failed check; SIGTERM, which it passes on to its workers."""
    if parent.poll() is None:
        parent.terminate()
        try:
            parent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            parent.kill()


def trials_of(url: str, study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)


def assert_no_number_twice(trials: list[FrozenTrial]) -> None:
    twice = [n for n, k in collections.Counter(t.number for t in trials).items() if k > 1]
    assert not twice, f"trial numbers handed out twice: {twice}"


def check_workers_share_a_study(url: str, *, workers: int, n_trials: int) -> None:
    """`search run --workers N` finishes exactly `n_trials` trials, each number once, trained by several workers."""
    args = ["--epochs", "1", "--trials", str(n_trials), "--workers", str(workers), "--study", "many"]
    parent = start_search("run", *TINY, *args, "--storage", url)
    try:
        output, _ = parent.communicate(timeout=LIMIT)
    finally:
        stop(parent)
    assert parent.returncode == 0, output
    assert "database is locked" not in output
    trials = trials_of(url, "many")
    assert_no_number_twice(trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, output
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.user_attrs.get("baseline", False) for t in finished) == 1, "the queued baseline ran once"
    assert len({t.user_attrs["worker"] for t in finished}) >= 2, "the trials were not shared between workers"
    assert all(f"[worker {k}] study 'many'" in output for k in range(1, workers + 1)), output


def check_killed_workers_trial_is_retried(url: str) -> None:
    """SIGKILL one of two workers mid-trial: its trial is failed, retried with the same params and finished.

    One trial is asked for, so the other worker waits instead of training: the seconds from the
    kill to the retry's start (printed) are the grace period plus the waiting worker's polling.
    """
    n_trials = 1
    args = ["--epochs", "3", "--pruner", "none", "--trials", str(n_trials), "--workers", "2"]
    storage = open_storage(url)  # its tables first: two processes creating them at once can collide
    parent = start_search("run", *TINY, *args, "--heartbeat", str(HEARTBEAT), "--study", "kill", "--storage", url)
    try:
        victim = _running_trial(storage, "kill", parent)
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        killed_at = time.time()
        output, _ = parent.communicate(timeout=LIMIT)
    finally:
        stop(parent)
    assert parent.returncode == 128 + signal.SIGKILL, output
    assert "was killed by SIGKILL" in output
    assert "database is locked" not in output
    trials = trials_of(url, "kill")
    assert_no_number_twice(trials)
    by_number = {t.number: t for t in trials}
    victim = by_number[victim.number]
    assert victim.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1, f"the killed trial was queued again {len(retries)} times"
    retry = retries[0]
    assert retry.params == victim.params
    assert retry.state == TrialState.COMPLETE
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == n_trials, output
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    delay = retry.datetime_start.timestamp() - killed_at
    # The killed worker's last heartbeat was at most one interval before the kill; the database
    # clock (SQLite) counts whole seconds.
    assert (GRACE_HEARTBEATS - 1) * HEARTBEAT - 1 <= delay < LIMIT
    failed_after = victim.datetime_complete.timestamp() - killed_at
    print(
        f"\n{url.split(':')[0]}: killed trial {victim.number} failed {failed_after:.1f} s after the kill, "
        f"retried as trial {retry.number} {delay:.1f} s after it (heartbeat {HEARTBEAT} s, "
        f"grace {GRACE_HEARTBEATS * HEARTBEAT} s)"
    )


def _running_trial(storage: optuna.storages.BaseStorage, study: str, parent: subprocess.Popen) -> FrozenTrial:
    """A trial some worker is training (its params all drawn), caught before its first epoch ends."""
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline and parent.poll() is None:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # the parent has not created the study yet
            trials = []
        for trial in trials:
            if trial.state == TrialState.RUNNING and "config" in trial.user_attrs and not trial.intermediate_values:
                return trial
        time.sleep(0.2)
    raise AssertionError(f"no worker started a trial; search output:\n{parent.communicate()[0]}")


def test_three_workers_write_one_sqlite_study_at_once(tmp_path: Path) -> None:
    check_workers_share_a_study(f"sqlite:///{tmp_path / 'studies.db'}", workers=3, n_trials=6)


def test_a_killed_worker_s_trial_is_retried_on_sqlite(tmp_path: Path) -> None:
    check_killed_workers_trial_is_retried(f"sqlite:///{tmp_path / 'studies.db'}")


# Three processes ask for trials at the same instant from a study whose queue holds 30 trials.
_ASK = """
import sys, time, optuna
from search.storage import open_storage
study = optuna.load_study(study_name="queue", storage=open_storage(sys.argv[1]))
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
for _ in range(20):
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0, 100))  # a queued trial gets its queued x
    print(trial.number)
"""


def test_sqlite_hands_each_queued_trial_to_one_process(tmp_path: Path) -> None:
    """Without BEGIN IMMEDIATE two processes pop the same queued trial (SQLite ignores FOR UPDATE)."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for x in range(30):
        study.enqueue_trial({"x": x}, user_attrs={"queued": True})
    start = time.time() + 4  # every process has opened the storage by then
    askers = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", _ASK, url, str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [asker.communicate(timeout=120) for asker in askers]
    assert all(asker.returncode == 0 for asker in askers), [err[-2000:] for _, err in outputs]
    numbers = [int(line) for out, _ in outputs for line in out.split()]
    assert len(numbers) == 60
    assert len(set(numbers)) == 60, "a trial was handed to two processes"
    trials = trials_of(url, "queue")
    assert_no_number_twice(trials)
    queued = [t for t in trials if t.user_attrs.get("queued")]
    assert sorted(t.params["x"] for t in queued if t.state == TrialState.COMPLETE) == list(range(30))
