"""Readers under load: `search rank` and the dashboard's trial list on a study of 10,000 trials.

The study is written straight into a fresh SQLite file (Optuna's own tables, one transaction),
with what real trials hold: the `full` space's params drawn by Optuna's random sampler, 20
per-epoch values, and the user attrs `search.objective.Objective` records (config, history,
versions...); 70 % complete, 25 % pruned, 5 % failed. Then it times, each from a fresh process:
`python -m search rank` (wall seconds), the dashboard's study API answer, and the trial list in
headless Chromium (from asking for the page to the first trial shown); and, in-process, the CPU
that reading every trial takes through Optuna's ORM and through the dashboard's bulk reads.

Targets (issue 19): rank under 3 s, the dashboard's trial list under 10 s.
Run: nice -n 19 .venv/bin/python bench/readers_load.py [--trials 10000]
Two versions of the dashboard side by side: --repos CLONE_A CLONE_B --rounds 3 times each
checkout's `search dashboard` in turn, round after round, on the same study.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
import sqlalchemy
from optuna.distributions import distribution_to_json

from search.config import TrialConfig
from search.storage import open_storage
from spaces import get_space

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 20
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run")
CHROMIUM_FLAGS += ("--disable-background-networking", "--disable-component-update", "--window-size=1400,1000")


def build(url: str, n_trials: int) -> int:
    """A study of `n_trials` realistic trials in a fresh storage; its study id."""
    storage = open_storage(url)
    study = optuna.create_study(study_name="big", storage=storage, direction="maximize")
    for key, value in {"space": "full", "backend": "tpe", "objective": "val_accuracy", "pruner": "hyperband"}.items():
        study.set_user_attr(key, value)
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rows: dict[str, list[dict]] = {k: [] for k in ("trials", "params", "values", "steps", "attrs")}
    start = datetime.datetime(2026, 1, 1)
    rng = random.Random(0)
    for number in range(n_trials):
        trial = draw.ask()
        config = get_space("full")(trial, TrialConfig())
        trial_id = number + 1
        state = "COMPLETE" if number % 20 < 14 else "PRUNED" if number % 20 < 19 else "FAIL"
        epochs = EPOCHS if state == "COMPLETE" else rng.randint(1, EPOCHS - 1)
        curve = [0.98 - 0.3 * rng.random() * math.exp(-e / 4) for e in range(1, epochs + 1)]
        began = start + datetime.timedelta(minutes=2 * number)
        rows["trials"].append(
            dict(
                trial_id=trial_id,
                number=number,
                study_id=study._study_id,
                state=state,
                datetime_start=began,
                datetime_complete=began + datetime.timedelta(seconds=90),
            )
        )
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            rows["params"].append(
                dict(
                    trial_id=trial_id,
                    param_name=name,
                    param_value=distribution.to_internal_repr(value),
                    distribution_json=distribution_to_json(distribution),
                )
            )
        if state == "COMPLETE":
            rows["values"].append(dict(trial_id=trial_id, objective=0, value=max(curve), value_type="FINITE"))
        for step, value in enumerate(curve if state != "FAIL" else [], 1):
            rows["steps"].append(
                dict(trial_id=trial_id, step=step, intermediate_value=value, intermediate_value_type="FINITE")
            )
        history = {k: [round(rng.random(), 4) for _ in curve] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        attrs = {
            "worker": "bench:1",
            "config": config.to_dict(),
            "param_count": rng.randint(10**4, 10**6),
            "epochs_run": epochs,
            "first_epoch": 1,
            "best_epoch": epochs,
            "seconds": 90.0,
            "history": history,
            "backend": "tpe",
            "seed": number,
            "dataset": "0" * 64,
            "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.12.0", "optuna": "5.1.0"},
        }
        if state == "FAIL":
            attrs["fail_reason"] = "loss became NaN at epoch 3"
        rows["attrs"] += [dict(trial_id=trial_id, key=k, value_json=json.dumps(v)) for k, v in attrs.items()]
    _insert(storage.engine, rows)
    return study._study_id


def _insert(engine: sqlalchemy.engine.Engine, rows: dict[str, list[dict]]) -> None:
    tables = sqlalchemy.MetaData()
    tables.reflect(engine)
    names = {
        "trials": "trials",
        "params": "trial_params",
        "values": "trial_values",
        "steps": "trial_intermediate_values",
        "attrs": "trial_user_attributes",
    }
    with engine.begin() as connection:
        for key, table in names.items():
            connection.execute(tables.tables[table].insert(), rows[key])


def time_rank(url: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "search", "rank", "--storage", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"search rank failed: {result.stderr[-2000:]}")
    return time.monotonic() - started


def time_reads(url: str, study_id: int) -> tuple[float, float]:
    """CPU seconds for every trial of the study through Optuna's ORM, and through the dashboard's bulk reads.

    Side by side in one process; the two must give the same trials.
    """
    figures, read = [], []
    for bulk in (False, True):
        storage = open_storage(url, bulk_reads=bulk)
        started = time.process_time()
        read.append(storage.get_all_trials(study_id, deepcopy=False))
        figures.append(time.process_time() - started)
        storage.engine.dispose()
    if read[0] != read[1]:
        raise SystemExit("the bulk reads differ from Optuna's")
    return figures[0], figures[1]


def time_dashboard(url: str, study_id: int, folder: Path, repo: Path = REPO) -> tuple[float, float, float]:
    """Seconds from launch until a fresh dashboard serves, then for the study's API answer, and for the trial
    list in Chromium; a fresh dashboard for each, `search dashboard` of the checkout `repo`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    figures, ready = [], 0.0
    for way in ("api", "browser"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "search", "dashboard", "--storage", url, "--port", str(port)]
        launched = time.monotonic()
        with (folder / f"dashboard-{way}.log").open("w") as log:
            server = subprocess.Popen(command, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_serving(f"{base}/api/meta")
            started = time.monotonic()
            ready = max(ready, started - launched)
            if way == "api":
                with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=600) as answer:
                    assert len(json.load(answer)["trials"]) > 0
            else:
                options = webdriver.ChromeOptions()
                options.binary_location = "/usr/bin/chromium"
                for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}"):
                    options.add_argument(flag)
                browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
                try:
                    started = time.monotonic()
                    browser.get(f"{base}/dashboard/studies/{study_id}/trials")
                    first = (By.XPATH, "//span[starts-with(., 'Trial ')]")
                    WebDriverWait(browser, 600).until(seen.presence_of_element_located(first))
                    browser.save_screenshot(str(folder / "trials.png"))
                finally:
                    browser.quit()
            figures.append(time.monotonic() - started)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return ready, figures[0], figures[1]


def _wait_serving(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the dashboard did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the study here and keep it (default: a temp folder)")
    parser.add_argument("--repos", type=Path, nargs="+", default=[REPO], help="checkouts whose dashboards are timed")
    parser.add_argument("--rounds", type=int, default=1, help="each round times every checkout's dashboard once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="readers-load-") as tmp:
        folder = args.keep or Path(tmp)
        url = f"sqlite:///{folder / 'big.db'}"
        started = time.monotonic()
        study_id = build(url, args.trials)
        print(f"built {args.trials} trials in {time.monotonic() - started:.0f} s")
        print(f"search rank: {time_rank(url):.1f} s (target < 3 s)")
        orm, bulk = time_reads(url, study_id)
        print(f"every trial, CPU: Optuna's ORM {orm:.1f} s, bulk reads {bulk:.1f} s ({orm / bulk:.1f}x)")
        for round_ in range(1, args.rounds + 1):
            for repo in args.repos:
                ready, api, browser = time_dashboard(url, study_id, folder, repo)
                print(
                    f"round {round_}, {_commit(repo)}: dashboard serving {ready:.1f} s after launch; then the "
                    f"study API {api:.1f} s, the trial list in Chromium {browser:.1f} s (target < 10 s)",
                    flush=True,
                )


def _commit(repo: Path) -> str:
    run = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=repo, capture_output=True, text=True, check=False)
    return f"{repo.name} at {run.stdout.strip() or 'unknown'}"


if __name__ == "__main__":
    main()
