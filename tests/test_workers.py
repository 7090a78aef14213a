"""Many workers on one study, on each storage engine: concurrent writers, and a worker killed mid-trial.

PostgreSQL runs as a throw-away cluster on loopback (conftest.postgres_server); where it is not
installed those cases skip with the reason, unless REQUIRE_SERVICES=1 (CI installs it): then they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from conftest import LIMIT, REPO, TINY_RUN, assert_no_number_twice, start_search, stop, trials_of, wait_for
from optuna.trial import FrozenTrial, TrialState

from search.record import TrialPlan, TrialRecord
from search.storage import GRACE_HEARTBEATS, open_storage
from search.workers import _verdict, worker_command

HEARTBEAT = 2  # seconds; a killed worker's trial is retried after GRACE_HEARTBEATS of them


def test_a_killed_worker_s_trial_is_retried(storage_url: str) -> None:
    """Two workers share one study; SIGKILL one mid-trial: its trial is failed, retried with the same params, finished.

    Two trials are asked for: each worker takes one (the queued baseline is one of them, run once),
    and the survivor, its own done, retries the victim's. The seconds from the kill to the retry's
    start (printed) are the grace period plus the survivor's training and polling. 8 workers at
    once are test_storage_load's.
    """
    url, n_trials = storage_url, 2
    args = ["--epochs", "3", "--pruner", "none", "--trials", str(n_trials), "--workers", "2"]
    storage = open_storage(url)  # its tables first: two processes creating them at once can collide
    parent = start_search("run", *TINY_RUN, *args, "--heartbeat", str(HEARTBEAT), "--study", "kill", "--storage", url)
    try:
        victim = _running_trial(storage, "kill", parent)
        os.kill(int(TrialRecord.from_attrs(victim.user_attrs).worker.rsplit(":", 1)[1]), signal.SIGKILL)
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
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sum(TrialPlan.from_attrs(t.user_attrs).baseline for t in finished) == 1, "the queued baseline ran once"
    workers = {TrialRecord.from_attrs(t.user_attrs).worker for t in trials}
    assert len(workers) == 2, f"the trials were not shared between the workers: {workers}"
    assert all(f"[worker {k}] study 'kill'" in output for k in (1, 2)), output
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

    def found() -> FrozenTrial | None:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # the parent has not created the study yet
            return None
        training = (t for t in trials if t.state == TrialState.RUNNING and "config" in t.user_attrs)
        return next((t for t in training if not t.intermediate_values), None)

    return wait_for(found, "a worker starting a trial", alive=parent)


# Three processes ask for trials at the same instant from a study whose queue holds 30 trials: each
# says it is ready (a file), then spins until the test creates the `go` file.
_ASK = """
import pathlib, sys, time, optuna
from search.storage import open_storage
study = optuna.load_study(study_name="queue", storage=open_storage(sys.argv[1]))
folder = pathlib.Path(sys.argv[2])
(folder / sys.argv[3]).touch()
while not (folder / "go").exists():
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
    askers = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", _ASK, url, str(tmp_path), f"ready{k}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]

    def all_ready() -> bool:
        ended = [asker.communicate()[1][-2000:] for asker in askers if asker.poll() is not None]
        assert not ended, f"an asker ended before the start: {ended}"
        return all((tmp_path / f"ready{k}").exists() for k in range(3))

    wait_for(all_ready, "three askers opening the study")
    (tmp_path / "go").touch()
    outputs = [asker.communicate(timeout=LIMIT) for asker in askers]
    assert all(asker.returncode == 0 for asker in askers), [err[-2000:] for _, err in outputs]
    numbers = [int(line) for out, _ in outputs for line in out.split()]
    assert len(numbers) == 60
    assert len(set(numbers)) == 60, "a trial was handed to two processes"
    trials = trials_of(url, "queue")
    assert_no_number_twice(trials)
    queued = [t for t in trials if t.user_attrs.get("queued")]
    assert sorted(t.params["x"] for t in queued if t.state == TrialState.COMPLETE) == list(range(30))


def test_the_workers_verdict_names_each_that_failed_and_exits_as_the_first(capsys) -> None:
    assert _verdict([0, 0]) == 0
    assert _verdict([0, -signal.SIGKILL, 3]) == 128 + signal.SIGKILL
    assert capsys.readouterr().err.splitlines() == [
        "worker 2 was killed by SIGKILL; trials it finished are kept",
        "worker 3 exited with status 3; trials it finished are kept",
    ]


def test_a_worker_s_command_joins_the_study_with_its_budget_in_minutes() -> None:
    command = worker_command(study="s", storage="sqlite:///x.db", n_trials=7, timeout=90.0)
    assert command[1:] == [
        "-m",
        "search",
        "worker",
        "--study",
        "s",
        "--storage",
        "sqlite:///x.db",
        "--trials",
        "7",
        "--timeout",
        "1.5",
    ]
