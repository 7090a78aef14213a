"""Storage under load: N worker processes run the real trial loop on one study, SQLite and PostgreSQL.

Each worker is `search.synthetic`'s: the product's loop (search/trials.py) with a trial forked
per trial, ask, heartbeats, per-epoch reports, the hyperband pruner, the surplus guard and
tell, around a made-up learning curve of a few milliseconds (no TensorFlow). Per engine and N
it reports trials per second, p50/p95 of ask / report / tell as the trial's process sees them,
storage errors in the workers' output, and the database server's CPU seconds (SQLite has no
server: its work is inside the workers). Then it checks the end state: exactly the requested
finished trials, no number twice, none left RUNNING or WAITING, every intermediate value there.
On PostgreSQL a quarter of the workers (at least one) is SIGKILLed mid-trial once 40 % of the
trials are done, and as many started again: their trials must be failed by heartbeat and retried.

Run: nice -n 19 .venv/bin/python bench/storage_load.py [--workers 1 4 16 32] [--trials 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
import pg_cluster
from load_checks import end_state_problems, storage_errors

from search import synthetic
from search.storage import open_storage

HEARTBEAT = 5  # seconds (product default 20): a killed worker's trial goes stale after GRACE_HEARTBEATS of them
LIMIT = 600  # seconds one run may take before its workers are stopped and the run reported as such
STUDY = "load"


def timed_worker(url: str, timings: str) -> None:
    """One worker, with Study.ask, Trial.report and Optuna's tell timed into `timings` (one line per call)."""

    def timed(name: str, call):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                with open(timings, "a") as out:
                    out.write(f"{name} {time.perf_counter() - started:.6f}\n")

        return wrapper

    optuna.Study.ask = timed("ask", optuna.Study.ask)
    optuna.Trial.report = timed("report", optuna.Trial.report)
    optimize = optuna.study._optimize  # optimize() tells through this; no public hook to time it
    optimize._tell_with_warning = timed("tell", optimize._tell_with_warning)
    synthetic.work(url, STUDY, timeout=LIMIT - 60)


def start_worker(url: str, folder: Path, k: int) -> subprocess.Popen:
    log = open(folder / f"worker-{k}.log", "w")  # noqa: SIM115 (the worker writes it until it exits)
    command = [sys.executable, __file__, "--worker", url, str(folder / f"timings-{k}.txt")]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def kill_mid_trial(url: str, workers: list[subprocess.Popen], count: int, at: int) -> set[int]:
    """Once `at` trials are finished, SIGKILL `count` workers seen running a trial; their pids.

    A trial seen running may end before the signal lands: `caught_mid_trial` says which were caught.
    """
    study = optuna.load_study(study_name=STUDY, storage=open_storage(url))
    alive = {w.pid for w in workers if w.poll() is None}
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline and alive:
        trials = study.get_trials(deepcopy=False)
        if sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL for t in trials) >= at:
            running = {}
            for trial in trials:
                if (
                    trial.state == optuna.trial.TrialState.RUNNING
                    and trial.intermediate_values
                    and _pid(trial) in alive
                ):
                    running.setdefault(_pid(trial), trial.number)
            if len(running) >= count:
                victims = set(list(running)[:count])
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                return victims
        time.sleep(0.05)
        alive = {w.pid for w in workers if w.poll() is None}
    return set()


def caught_mid_trial(trials: list[optuna.trial.FrozenTrial], killed: set[int]) -> list[int]:
    """The trials the killed workers were running: failed without a reason of their own (nor a retry's copy)."""
    return [
        t.number
        for t in trials
        if _pid(t) in killed
        and t.state == optuna.trial.TrialState.FAIL
        and "fail_reason" not in t.user_attrs
        and "failed_trial" not in t.system_attrs
    ]


def _failed_as_stale(trial: optuna.trial.FrozenTrial) -> bool:
    """Failed by a worker's heartbeat check, not by its own runner (which always says why)."""
    return trial.state == optuna.trial.TrialState.FAIL and "fail_reason" not in trial.user_attrs


def _pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs.get("worker", "x:0").rsplit(":", 1)[1])


def run(url: str, engine: str, n: int, n_trials: int, folder: Path, server: pg_cluster.Cluster) -> dict:
    """One run: a fresh study, `n` workers until it holds `n_trials`; its figures and end-state check."""
    synthetic.create_study(url, STUDY, n_trials=n_trials, heartbeat=HEARTBEAT)
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    workers = [start_worker(url, folder, k) for k in range(n)]
    victims: set[int] = set()
    if engine == "postgresql":
        victims = kill_mid_trial(url, workers, max(1, n // 4), at=int(0.4 * n_trials))
        workers += [start_worker(url, folder, n + k) for k in range(len(victims))]
    peak = 0
    while any(w.poll() is None for w in workers) and time.monotonic() - started < LIMIT:
        peak = max(peak, server.connections())
        time.sleep(0.2)
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
    statuses = [worker.wait() for worker in workers]
    wall, cpu = time.monotonic() - started, server.cpu_seconds() - cpu_before
    trials = optuna.load_study(study_name=STUDY, storage=open_storage(url)).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in trials)).total_seconds()
    times, caught = _timings(folder), caught_mid_trial(trials, victims)
    unexpected = [s for w, s in zip(workers, statuses, strict=True) if w.pid not in victims and s != 0]
    return {
        "engine": engine,
        "n": n,
        "finished": len(finished),
        "trials_per_s": len(finished) / span,
        "wall_s": wall,
        **{f"{op}_p{q}": _percentile(times.get(op, []), q) for op in ("ask", "report", "tell") for q in (50, 95)},
        "errors": storage_errors(folder.glob("worker-*.log")),
        "server_cpu": cpu,
        "connections": peak,
        "problems": end_state_problems(trials, n_trials, synthetic.EPOCHS, caught)
        + [f"{len(unexpected)} workers exited with status {sorted(set(unexpected))}"] * bool(unexpected),
        "killed": victims,
        "caught": caught,
        "stale": [t.number for t in trials if _failed_as_stale(t) and t.number not in caught],
        "retries": {
            t.system_attrs["failed_trial"]: f"{t.number} {t.state.name}"
            for t in trials
            if "failed_trial" in t.system_attrs
        },
    }


def _timings(folder: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for path in folder.glob("timings-*.txt"):
        for line in path.read_text().splitlines():
            name, seconds = line.split()
            found.setdefault(name, []).append(float(seconds))
    return found


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def row(r: dict) -> str:
    cpu = "in the workers" if r["engine"] == "sqlite" else f"{r['server_cpu']:.1f} ({r['connections']} conn.)"
    lat = " | ".join(f"{r[f'{op}_p50']:.0f} / {r[f'{op}_p95']:.0f}" for op in ("ask", "report", "tell"))
    errors = ", ".join(f"{k} x{v}" for k, v in r["errors"].items()) or "none"
    ok = "; ".join(r["problems"]) or "all hold"
    if r["stale"]:
        ok += f"; {len(r['stale'])} live trials failed as stale and retried"
    return (
        f"| {r['engine']} | {r['n']} | {r['finished']} | {r['trials_per_s']:.1f} | {r['wall_s']:.0f} | {lat} "
        f"| {cpu} | {errors} | {ok} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(
        "| engine | workers | finished | trials/s | wall s | ask p50/p95 ms | report p50/p95 ms | tell p50/p95 ms "
        "| server CPU s (peak connections) | storage errors | end state |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    kills = []
    with tempfile.TemporaryDirectory(prefix="storage-load-") as tmp:
        if "sqlite" in args.engines:
            for n in args.workers:
                folder = Path(tmp, f"sqlite-{n}")
                folder.mkdir()
                print(
                    row(
                        run(
                            f"sqlite:///{folder / 'studies.db'}", "sqlite", n, args.trials, folder, pg_cluster.NO_SERVER
                        )
                    ),
                    flush=True,
                )
        if "postgresql" in args.engines:
            with pg_cluster.cluster() as pg:
                limit = pg.max_connections()
                for n in args.workers:
                    folder = Path(tmp, f"postgresql-{n}")
                    folder.mkdir()
                    r = run(pg.create_database(f"load{n}"), "postgresql", n, args.trials, folder, pg)
                    print(row(r), flush=True)
                    kills.append(r)
                print(f"\nPostgreSQL max_connections: {limit}")
    for r in kills:
        print(
            f"- {r['n']} workers: SIGKILLed {len(r['killed'])}, started as many again; caught mid-trial: "
            f"trials {r['caught']}; retried (killed trial: retry, its state): {r['retries']}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        timed_worker(*sys.argv[2:4])
    else:
        main()
