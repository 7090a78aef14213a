"""Shared fixtures and helpers: the real MNIST split, a tiny slice of it, and ways to run and watch `search`.

Helpers that wait for another process wait for a state, never for a fixed time: they poll with
a generous deadline (`LIMIT`) and name what never happened, so a slow or busy machine is only slower.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import itertools
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import pytest
from optuna.trial import FrozenTrial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # the benchmarks' own helpers
import pg_cluster

from search.backends import Backend, Stop
from search.config import TrialConfig
from search.data import Dataset, load_mnist
from search.record import TrialPlan, TrialRecord
from search.spec import StudySpec
from search.storage import open_storage
from search.trials import enqueue
from spaces import SPACES
from spaces._scope import only_when

REPO = Path(__file__).resolve().parents[1]
# The tests' data cache, for this process and every `search` it starts: the repository's git-ignored
# data/ (where `make test` fetches MNIST first), never the user's own cache.
DATA = REPO / "data"
os.environ["SEARCH_DATA_DIR"] = str(DATA)

# Big enough for a one-hidden-layer MLP to learn in two epochs, small enough for ~2 s of training.
TINY_TRAIN = 2_000
TINY_VAL = 500
# Tiny searches from the command line: the schedule space (the reference network in every trial, so
# no trial costs more than the baseline) on 300 training images (validation: all 10,000).
TINY_RUN = ("--space", "schedule", "--subset", "300", "--timeout", "10")
# The shared tiny study (`tiny_study`): the reference model (trial 0) and two TPE trials of the
# size space, 2 epochs on 500 training images, seed 3, under the space's default study name; it
# keeps the models of its best 2 trials, so one of its three has none.
TINY_STUDY = "size-tpe"
TINY_STUDY_RUN = ("run", "--space", "size", "--subset", "500", "--epochs", "2", "--pruner", "none", "--seed", "3")
TINY_STUDY_RUN += ("--keep-models", "2")
TINY_STUDY_KEEPS = 2
TINY_STUDY_TRIALS = 3
SMALL_UNITS = [8, 16, 32, 64, 128, 256, 512]  # small_space's widths: the reference network's, and no wider
LIMIT = 600  # seconds a tiny search or a state may take on a loaded 2-core machine before a test gives up
POLL_SECONDS = 0.2

T = TypeVar("T")


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    """The real split from the tests' cache (repo's data/); the first run fetches it."""
    return load_mnist(DATA)


@pytest.fixture(scope="session")
def tiny_mnist(mnist: Dataset) -> Dataset:
    """The first 2,000 training and 500 validation images of the real split (test set untouched)."""
    return dataclasses.replace(
        mnist,
        x_train=mnist.x_train[:TINY_TRAIN],
        y_train=mnist.y_train[:TINY_TRAIN],
        x_val=mnist.x_val[:TINY_VAL],
        y_val=mnist.y_val[:TINY_VAL],
    )


def small_space(trial: Any, base: TrialConfig) -> TrialConfig:
    """A test-only space: the size space's parameters, capped at the reference network's depth and widths.

    For in-process studies whose trials only need to differ: the size space's widest draws (8 x 2048)
    spend most of a tiny trial validating on 10,000 images.
    """
    depth = len(TrialConfig().hidden_units)
    n_layers = trial.suggest_int("n_layers", 1, depth)
    units = []
    for k in range(1, n_layers + 1):
        with only_when(trial, "n_layers", range(k, depth + 1)):  # as the size space says it
            units.append(trial.suggest_categorical(f"units_layer_{k}", SMALL_UNITS))
    return base.replace(hidden_units=tuple(units))


@pytest.fixture(scope="module")
def small() -> Iterator[str]:
    """The name under which `small_space` is a known space, for one test module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SPACES, "small", small_space)
        yield "small"


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The storage URL of one real study, made once per test run by the command line and shared.

    `TINY_STUDY_RUN` for one trial (the baseline), then the same command resumed to
    `TINY_STUDY_TRIALS`, so it also shows what a resume adds. Under pytest-xdist the workers share
    it through a lock file in their common folder: the first to need it builds it, the others wait.
    Tests only read it; one that changes a study works on a copy.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    db, built = root / "tiny_study.db", root / "tiny_study.built"
    url = f"sqlite:///{db}"
    with open(root / "tiny_study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.exists():
            for n_trials in (1, TINY_STUDY_TRIALS):
                result = search_cli(*TINY_STUDY_RUN, "--trials", str(n_trials), "--storage", url)
                assert result.returncode == 0, result.stdout + result.stderr
            built.touch()
    return url


def wait_for(
    condition: Callable[[], T | None], what: str, *, limit: float = LIMIT, alive: subprocess.Popen | None = None
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` at the deadline.

    With `alive`, also fail at once if that process has ended (the state would never come).
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if found := condition():
            return found
        if alive is not None and alive.poll() is not None:
            output = alive.communicate()[0] if alive.stdout else ""
            pytest.fail(f"{what}: never happened, the process ended with status {alive.returncode}\n{output}")
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{what}: never happened within {limit} s")


def search_cli(*args: str, cwd: Path = REPO, timeout: float = LIMIT) -> subprocess.CompletedProcess[str]:
    """`python -m search ARGS` to the end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


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


def run_synthetic_workers(
    url: str, study: str, n_workers: int, folder: Path, *args: str, together: bool = False
) -> list[Path]:
    """`python -m search.synthetic` workers on `study` to the end, each with `args`; their logs. Fails if one did.

    `together`: no worker starts a trial before all have joined (on a busy machine the first
    could otherwise finish every trial before the last one has started Python).
    """
    go = folder / "go"
    command = [sys.executable, "-m", "search.synthetic", "--storage", url, "--study", study, *args]
    command += ["--wait-for", str(go)] if together else []
    logs = [folder / f"worker-{k}.log" for k in range(n_workers)]
    workers = [subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    try:
        if together:
            deadline = time.monotonic() + LIMIT
            while not all("ready" in log.read_text().splitlines() for log in logs):
                gone = [worker.returncode for worker in workers if worker.poll() is not None]
                assert not gone and time.monotonic() < deadline, "".join(log.read_text() for log in logs)[-5000:]
                time.sleep(0.1)
            go.touch()
        statuses = [worker.wait(timeout=LIMIT) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert statuses == [0] * n_workers, "".join(log.read_text() for log in logs)[-5000:]
    return logs


def trials_of(url: str, study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)


def assert_no_number_twice(trials: list[FrozenTrial]) -> None:
    twice = [n for n, k in collections.Counter(t.number for t in trials).items() if k > 1]
    assert not twice, f"trial numbers handed out twice: {twice}"


def epochs_reported(db: Path, number: int) -> int:
    """How many epochs trial `number` has reported; plain sqlite3, since the search may be creating the tables."""
    query = (
        "SELECT count(*) FROM trial_intermediate_values v JOIN trials t ON v.trial_id = t.trial_id WHERE t.number = ?"
    )
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute(query, (number,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def drive(backend: Backend, study: optuna.Study, space: str, score: Callable[[TrialConfig], float], limit: int) -> int:
    """The driver's loop with a made-up score instead of training: the algorithm's bookkeeping alone.

    As `search.trials` does: the backend may propose the next trial; an Optuna backend samples with
    the sampler it makes for the study's trial count. Returns the trials run (fewer once it stops).
    """
    done = 0
    while done < limit and not isinstance(proposal := backend.propose(study), Stop):
        if proposal is not None:
            enqueue(study, proposal)
        if backend.make_sampler is not None:
            study.sampler = backend.make_sampler(len(study.get_trials(deepcopy=False)))
        trial = study.ask()
        value = score(SPACES[space](trial, TrialConfig()))
        trial.set_user_attr("history", {"val_accuracy": [value], "val_loss": [1 - value]})
        trial.set_user_attr("first_epoch", 1)
        backend.trial_finished(study, study.tell(trial, value))
        done += 1
    return done


# (accuracy, trainable parameters, baseline) of `made_up_front`'s complete trials: trial 2 is dominated by trial 1.
FRONT = [(0.97, 1_000, False), (0.98, 5_000, True), (0.975, 8_000, False), (0.99, 100_000, False)]


def made_up_front(url: str, name: str) -> None:
    """A study of accuracy against parameters as `search run` records one, without training: the `FRONT`
    trials, complete, then one pruned."""
    spec = StudySpec(space="size", backend="tpe", objective="val_accuracy,params", pruner="size-aware")
    study = optuna.create_study(study_name=name, storage=url, directions=spec.directions)
    for key, value in spec.attrs().items():
        study.set_user_attr(key, value)
    study.set_metric_names(list(spec.objectives))
    for accuracy, params, baseline in FRONT:
        record = TrialRecord(config=TrialConfig().to_dict(), trainable_params=params, param_count=params)
        attrs = {**record.to_attrs(), **TrialPlan(baseline=baseline).to_attrs()}
        study.add_trial(optuna.trial.create_trial(values=[accuracy, params], user_attrs=attrs))
    pruned = TrialRecord(trainable_params=10, history={"val_accuracy": [0.5]})
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=pruned.to_attrs()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_service(reason: str) -> None:
    """Skip for want of a server or browser, or fail when CI installed them (REQUIRE_SERVICES=1)."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[], str]]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 for the whole run; each call makes a fresh database URL."""
    if pg_cluster.server_programs() is None:
        require_service("PostgreSQL server programs (initdb, pg_ctl) not installed; apt-get install postgresql")
    numbers = itertools.count()
    with pg_cluster.cluster() as server:
        yield lambda: server.create_database(f"search{next(numbers)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty storage of each engine the product supports: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres_server")()
