"""Tests for search/dashboard.py: the real dashboard over a real search's SQLite file, and in a real browser."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import made_up_front
from optuna.trial import TrialState
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from search.artifacts import recorded_store
from search.cli import main
from search.dashboard import _read_ahead, dashboard_url
from search.kept import stored_model
from search.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: the test needs nothing but loopback
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
STUDY, TRIALS = "polled", 3
WAIT_SECONDS = 240  # generous: the CI machine has two cores and trains while the browser renders


@dataclass
class PolledSearch:
    """A real search that ran while the real dashboard was polled over the same SQLite file."""

    storage: str
    base: str  # the dashboard's http://127.0.0.1:PORT
    returncode: int
    output: str
    dashboard_log: Path
    completes_seen: list[int]  # complete trials in each poll's answer, in order
    polls: int
    poll_errors: list[str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Loopback needs no proxy, and urllib's default opener keeps whatever proxies the environment had
# at this process's first request (another test file run earlier in the same pytest worker may have set some).
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> dict:
    with LOOPBACK.open(url, timeout=30) as response:
        return json.load(response)


def _wait_until_serving(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    last_error = None
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the dashboard exited: {log.read_text()}"
        try:
            _get(f"{base}/api/meta")
            return
        except OSError as error:
            last_error = error
            time.sleep(0.2)
    pytest.fail(f"the dashboard did not answer within {WAIT_SECONDS} s (last: {last_error}): {log.read_text()}")


def _poll(base: str, seen: list[int], errors: list[str]) -> None:
    """What a dashboard user's page fetches: the study list, then each study with its trials."""
    try:
        for study in _get(f"{base}/api/studies")["study_summaries"]:
            trials = _get(f"{base}/api/studies/{study['study_id']}")["trials"]
            seen.append(sum(trial["state"] == "Complete" for trial in trials))
    except OSError as error:
        errors.append(str(error))


@pytest.fixture(scope="module")
def polled_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolledSearch]:
    folder = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{folder / 's.db'}"
    open_storage(storage)  # an empty database, so the dashboard is up before the search's first write
    port, log = _free_port(), folder / "dashboard.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "search", "dashboard", "--storage", storage, "--port", str(port)],
            cwd=REPO,
            stdout=sink,  # files, not pipes: a full pipe of request logs would stall the server
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, server, log)
        yield _search_while_polling(storage, base, log, folder)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _search_while_polling(storage: str, base: str, log: Path, folder: Path) -> PolledSearch:
    # The schedule space trains the reference network each trial: the size space's widest draws would only cost time.
    command = [sys.executable, "-m", "search", "run", "--space", "schedule", "--subset", "500", "--epochs", "2"]
    command += ["--pruner", "none", "--trials", str(TRIALS), "--timeout", "0", "--study", STUDY, "--storage", storage]
    seen: list[int] = []
    errors: list[str] = []
    polls = 0
    with (folder / "search.log").open("w") as sink:
        search = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        while search.poll() is None:
            _poll(base, seen, errors)
            polls += 1
            time.sleep(0.2)  # several polls per trial; faster would only take CPU from the training
    # The dashboard caches what it read for a few seconds: the last trial shows on a later reload.
    deadline = time.monotonic() + WAIT_SECONDS
    _poll(base, seen, errors)
    while seen and seen[-1] < TRIALS and time.monotonic() < deadline:
        time.sleep(1)
        _poll(base, seen, errors)
        polls += 1
    output = (folder / "search.log").read_text()
    return PolledSearch(storage, base, search.returncode, output, log, seen, polls + 1, errors)


def test_search_finishes_every_trial_while_the_dashboard_polls(polled_search: PolledSearch) -> None:
    result = polled_search
    assert result.returncode == 0, result.output
    assert f"done: {TRIALS} complete, 0 pruned, 0 failed" in result.output
    assert "database is locked" not in result.output
    assert "database is locked" not in result.dashboard_log.read_text()
    assert result.poll_errors == []
    stored = optuna.load_study(study_name=STUDY, storage=result.storage)
    assert [t.state for t in stored.get_trials()] == [TrialState.COMPLETE] * TRIALS
    # The dashboard answered many times during the search and saw the trials arrive one by one.
    assert result.polls >= 20, result.polls
    assert result.completes_seen[-1] == TRIALS
    assert result.completes_seen == sorted(result.completes_seen)
    assert {1, 2, 3} & set(result.completes_seen), result.completes_seen
    port = result.base.rsplit(":", 1)[1]
    assert f"optuna-dashboard on {dashboard_url('127.0.0.1', int(port))} (Ctrl-C stops it)\n" in (
        result.dashboard_log.read_text()
    )


def _search(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_dashboard_reads_every_study_ahead_of_its_first_page(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ahead.db'}"
    for name in ("one", "two"):
        study = optuna.create_study(study_name=name, storage=open_storage(url))
        study.optimize(lambda trial: trial.suggest_float("x", 0.25, 0.5), n_trials=2)
    bulk = open_storage(url, bulk_reads=True)
    _read_ahead(bulk)
    with bulk.engine.begin() as connection:  # changed behind Optuna's back: what was read ahead is not read again
        connection.execute(sqlalchemy.text("UPDATE trial_values SET value = 7"))
    for name in ("one", "two"):
        trials = bulk.get_all_trials(bulk.get_study_id_from_name(name), deepcopy=False)
        assert [t.value for t in trials] == [t.params["x"] for t in trials]


def test_dashboard_refuses_a_missing_database_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    absent = tmp_path / "absent.db"
    assert main(["dashboard", "--storage", f"sqlite:///{absent}", "--port", str(_free_port())]) == 2
    assert capsys.readouterr().err == f"error: no database at {absent}; run `make search` first or pass --storage\n"
    assert not absent.exists()


def test_dashboard_on_a_busy_port_says_which_and_how_to_fix_it(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    open_storage(storage)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _search("dashboard", "--storage", storage, "--port", str(port))
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last == f"error: cannot serve on 127.0.0.1:{port} (Address already in use); pass another --port or --host"
    assert "Traceback" not in result.stderr


def _browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@dataclass
class PageText:
    """What the headless browser read off the dashboard's pages."""

    study_link: str
    study_page: str
    trial_list: list[str]
    curve: list[str]  # the chosen trial's "Intermediate Values" rows: "<step> <value>"
    artifacts: list[tuple[str, str]]  # the chosen trial's artifact cards: (file name, download address)


def _browse(base: str, trial: int, last_trial: int, folder: Path) -> PageText:
    """Click through the dashboard as a user would: home, the study, its trial list, one trial."""
    browser = _browser(folder / "profile")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    try:
        browser.get(f"{base}/dashboard")
        link = wait.until(seen.element_to_be_clickable((By.XPATH, f"//a[contains(., '{STUDY}')]")))
        study_link, study_url = link.text, link.get_attribute("href")
        link.click()
        # The study page plots every trial's intermediate values (one per epoch), legend "trial #N".
        first_curve = (By.XPATH, "//*[name()='text' and normalize-space(.)='trial #0']")
        legend = wait.until(seen.presence_of_element_located(first_curve))
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", legend)
        study_page = browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(folder / "dashboard-study.png"))
        browser.get(f"{study_url}/trials")
        wait.until(seen.presence_of_element_located((By.XPATH, f"//span[.='Trial {last_trial}']")))
        trial_list = [span.text for span in browser.find_elements(By.XPATH, "//span[starts-with(., 'Trial ')]")]
        browser.find_element(By.XPATH, f"//span[.='Trial {trial}']").click()
        wait.until(seen.presence_of_element_located((By.XPATH, f"//h4[starts-with(., 'Trial {trial} (')]")))
        rows = browser.find_elements(By.XPATH, "//p[.='Intermediate Values']/following-sibling::div//p")
        curve = [row.text for row in rows]
        browser.save_screenshot(str(folder / "dashboard-trial.png"))
        download = (By.XPATH, "//a[@aria-label='download artifact']")
        card = wait.until(seen.presence_of_element_located(download))
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
        browser.save_screenshot(str(folder / "dashboard-artifact.png"))
        cards = [(a.get_attribute("download"), a.get_attribute("href")) for a in browser.find_elements(*download)]
    finally:
        browser.quit()
    return PageText(study_link, study_page, trial_list, curve, cards)


def test_dashboard_in_a_browser_shows_the_study_its_trials_and_a_learning_curve(
    polled_search: PolledSearch, tmp_path: Path
) -> None:
    _require_chromium()
    stored = optuna.load_study(study_name=STUDY, storage=polled_search.storage)
    best, numbers = stored.best_trial, [trial.number for trial in stored.get_trials()]
    page = _browse(polled_search.base, best.number, numbers[-1], tmp_path)
    print(f"home page link: {page.study_link!r}\ntrial list: {page.trial_list}\ntrial {best.number}: {page.curve}")
    assert page.study_link.splitlines()[0].endswith(STUDY)
    assert "Intermediate values" in page.study_page
    assert all(f"trial #{number}" in page.study_page for number in numbers)
    assert page.trial_list == [f"Trial {number}" for number in numbers]
    read = {int(step): float(value) for step, value in (row.split() for row in page.curve)}
    assert sorted(read) == [1, 2]
    assert all(math.isclose(read[step], best.intermediate_values[step]) for step in read)
    assert (tmp_path / "dashboard-trial.png").stat().st_size > 10_000
    # The best trial's kept model shows as its artifact, and the download serves the stored file itself.
    model = stored_model(stored, best.number)
    (name, address), *others = page.artifacts
    assert (name, others) == (f"trial_{best.number}.keras", [])
    assert address.startswith(f"{polled_search.base}/artifacts/") and address.endswith(f"/{model.artifact_id}")
    with LOOPBACK.open(address, timeout=30) as response:
        served = response.read()
    assert served == (Path(recorded_store(stored.user_attrs, STUDY).where) / model.artifact_id).read_bytes()


def test_dashboard_in_a_browser_draws_a_multi_objective_studys_pareto_front(tmp_path: Path) -> None:
    """A made-up study of accuracy against parameters (tests/conftest.py), no training: the study page's front."""
    _require_chromium()
    storage = f"sqlite:///{tmp_path / 'front.db'}"
    made_up_front(storage, "front")
    port, log = _free_port(), tmp_path / "dashboard.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "search", "dashboard", "--storage", storage, "--port", str(port)],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        _wait_until_serving(base, server, log)
        study_id = _get(f"{base}/api/studies")["study_summaries"][0]["study_id"]
        browser = _browser(tmp_path / "profile")
        browser.get(f"{base}/dashboard/studies/{study_id}")
        wait = WebDriverWait(browser, WAIT_SECONDS)
        title = wait.until(seen.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Pareto Front']")))
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", title)
        # The plot's ticks span the made-up trials' parameters, up to 100,000.
        wait.until(seen.presence_of_element_located((By.XPATH, "//*[name()='text' and normalize-space(.)='100k']")))
        page = browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(tmp_path / "dashboard-pareto.png"))
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)
    assert "Objective X:\nval_accuracy\nObjective Y:\nparams" in page, "the study's metric names, in its order"
    assert (tmp_path / "dashboard-pareto.png").stat().st_size > 10_000
