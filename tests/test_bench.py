"""The benchmark scripts' own logic: bench/run_all.py, search_efficiency.py, pareto.py and techniques.py
(not their figures)."""

from __future__ import annotations

import datetime
import importlib
import subprocess
import sys

import optuna
import pytest
from conftest import LIMIT, REPO
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(REPO / "bench"))  # the scripts import each other by name, as `python bench/x.py` does
run_all = importlib.import_module("run_all")
search_efficiency = importlib.import_module("search_efficiency")
pareto = importlib.import_module("pareto")

LAUNCH = datetime.datetime(2026, 1, 1, 12, 0, 0)


def test_run_all_plans_the_default_set_and_the_quick_one():
    default = run_all.parse([])
    assert default.file == run_all.BENCHMARKS
    commands = {b.name: " ".join(run_all.command_of(b, default)) for b in run_all.BENCHES}
    assert commands["epoch_speed"].endswith("bench/epoch_speed.py --rounds 3 --epochs 3")
    assert commands["memory"].endswith("bench/memory.py --trials 20")
    # search_efficiency writes its own section, into the same default file: no extra flags
    assert commands["search_efficiency"].endswith("bench/search_efficiency.py --budget 4")

    quick = run_all.parse(["--quick", "--only", "search_efficiency", "memory"])
    assert quick.file is None, "--quick must leave BENCHMARKS.md alone"
    assert quick.only == ["search_efficiency", "memory"]
    efficiency = next(b for b in run_all.BENCHES if b.name == "search_efficiency")
    assert run_all.command_of(efficiency, quick)[-1] == "--no-write"
    elsewhere = run_all.parse(["--quick", "--file", "/tmp/x.md"])
    assert run_all.command_of(efficiency, elsewhere)[-2:] == ["--benchmarks", "/tmp/x.md"]
    with pytest.raises(SystemExit):
        run_all.parse(["--only", "nonsense"])


def test_write_section_replaces_only_its_markers(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# B\n\n## Memory\n\nprose\n\n<!-- memory:start -->\nold\n<!-- memory:end -->\n\n## Workers\n\nhand\n"
    )
    run_all.write_section(path, "memory", "Memory", "new figures\n")
    run_all.write_section(path, "overhead", "Driver overhead", "first\n")
    run_all.write_section(path, "overhead", "Driver overhead", "second\n")
    assert path.read_text() == (
        "# B\n\n## Memory\n\nprose\n\n<!-- memory:start -->\nnew figures\n<!-- memory:end -->\n\n## Workers\n\nhand\n"
        "\n## Driver overhead\n\n<!-- overhead:start -->\nsecond\n<!-- overhead:end -->\n"
    )


def test_plain_output_becomes_markdown():
    text = run_all.as_markdown("round 1: 3.2s\n\n| a | b |\n|---|---|\n| 1 | 2 |\ndone\n")
    assert text == "```\nround 1: 3.2s\n\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ndone\n```"


def test_search_efficiency_flags():
    plain = search_efficiency._parse([])
    assert (plain.budget, plain.seeds, plain.subset) == (10.0, [0], 0)
    assert plain.backends == ["tpe", "random", "kt-hyperband", "kt-bayesian"]
    full = search_efficiency._parse(["--full"])
    assert (full.budget, full.seeds, full.backends) == (10.0, [0, 1, 2], plain.backends)
    for wrong in (["--full", "--budget", "3"], ["--budget", "0"], ["--backends", "nonsense"], ["--space", "x"]):
        with pytest.raises(SystemExit):
            search_efficiency._parse(wrong)


def _trial(number: int, state: TrialState, start: float, end: float | None, curve: list[float]) -> FrozenTrial:
    """A stored-trial record as `search run` leaves it; times in seconds after LAUNCH."""
    at = lambda seconds: None if seconds is None else LAUNCH + datetime.timedelta(seconds=seconds)  # noqa: E731
    return FrozenTrial(
        number=number,
        state=state,
        value=max(curve) if state == TrialState.COMPLETE else None,
        values=None,
        datetime_start=at(start),
        datetime_complete=at(end),
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"history": {"val_accuracy": curve}} if end is not None else {},
        system_attrs={},
        intermediate_values=dict(enumerate(curve, start=1)),
        trial_id=number,
    )


def test_figures_count_what_finished_within_the_budget():
    trials = [
        _trial(0, TrialState.COMPLETE, 10, 40, [0.97, 0.976, 0.981]),  # epochs end at 20, 30, 40 s
        _trial(1, TrialState.PRUNED, 41, 50, [0.978]),  # pruned trials count; 97.5% was reached earlier
        _trial(2, TrialState.COMPLETE, 50, 70, [0.99]),  # finished after the 60 s budget: counts for nothing
        _trial(3, TrialState.FAIL, 70, 75, [0.5]),  # cut at the deadline
        _trial(4, TrialState.WAITING, None, None, []),  # queued, never started
    ]
    result = search_efficiency.figures(trials, "tpe", 0, LAUNCH, budget=1.0)
    assert result.best == pytest.approx(0.981)
    assert result.reached == {0.98: (pytest.approx(40.0), 0), 0.988: None}
    assert (result.complete, result.pruned, result.cut, result.epochs) == (1, 1, 2, 6)
    never = search_efficiency.figures([_trial(0, TrialState.COMPLETE, 10, 40, [0.97])], "random", 0, LAUNCH, 1.0)
    assert never.reached[0.98] is None
    assert search_efficiency.reach_seconds(never, 0.98, budget=1.0) == 60.0, "not reached counts as the budget"


def test_a_real_run_is_cut_at_its_budget_and_writes_its_table(tmp_path):
    """A run far longer than its budget (1,000 epochs): the cut is certain however fast the machine."""
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\n## Workers\n\nhand-written\n")
    out = tmp_path / "runs"
    command = ["--budget", "0.15", "--subset", "500", "--epochs", "1000", "--backends", "tpe"]
    # Unstopped, 1,000 epochs take far longer than the test's limit.
    printed = _script("search_efficiency", *command, "--out", str(out), "--benchmarks", str(benchmarks))
    row = next(line for line in printed.splitlines() if line.startswith("| tpe | 0 |")).split(" | ")
    # On a slow machine the budget may end before the first trial even starts (or the study is
    # made): then nothing was cut. A fast one may pause a trial or two at asha's first rung.
    assert int(row[5]) == 0 and int(row[7]) <= 1, f"no trial may complete: {row}"
    written = benchmarks.read_text()
    assert written.startswith("# Benchmarks\n\n## Workers\n\nhand-written\n")
    # A short budget never replaces the 20-minute comparison the targets are judged on.
    assert "<!-- search_efficiency:start -->" not in written
    section = written.split("<!-- search_efficiency_short:start -->\n")[1].split(
        "<!-- search_efficiency_short:end -->"
    )[0]
    assert "bench/search_efficiency.py --budget 0.15 --subset 500" in section
    assert "| tpe | asha |" in section and "not judged" in section
    storage = f"sqlite:///{out / 'efficiency.db'}"
    if "tpe-seed0" not in optuna.get_all_study_names(storage):
        return  # stopped before it made its study
    trials = optuna.load_study(study_name="tpe-seed0", storage=storage).trials
    assert not any("baseline" in t.user_attrs for t in trials)  # --no-baseline
    assert all(t.state in (TrialState.FAIL, TrialState.RUNNING, TrialState.PRUNED) for t in trials)
    assert all(len(t.intermediate_values) <= 3 for t in trials)  # none went past the first rung


def test_hypervolume_is_the_area_the_front_dominates_up_to_the_reference():
    assert pareto.REFERENCE == (0.10, 8.0)
    assert pareto.hypervolume([(0.95, 10_000)]) == pytest.approx(0.05 * 4)
    two = pareto.hypervolume([(0.95, 10_000), (0.98, 1_000_000)])
    assert two == pytest.approx(0.03 * 2 + 0.05 * 4)
    dominated_and_outside = [(0.94, 20_000), (0.85, 10), (0.99, 10**9)]
    assert pareto.hypervolume([(0.95, 10_000), (0.98, 1_000_000), *dominated_and_outside]) == pytest.approx(two)
    assert pareto.hypervolume([]) == 0.0


def test_pareto_counts_what_finished_in_time_and_its_front():
    def trial(number: int, state: TrialState, end: float, values: list[float] | None = None) -> FrozenTrial:
        made = optuna.trial.create_trial(state=state, values=values)
        made.number, made.datetime_complete = number, LAUNCH + datetime.timedelta(seconds=end)
        return made

    trials = [
        trial(0, TrialState.COMPLETE, 10, [0.95, 10_000]),
        trial(1, TrialState.COMPLETE, 20, [0.94, 20_000]),  # dominated by trial 0
        trial(2, TrialState.PRUNED, 30),
        trial(3, TrialState.COMPLETE, 70, [0.99, 50_000]),  # after the 60 s budget: counts for nothing
    ]
    run = pareto.run_of(trials, "size-aware", 0, LAUNCH + datetime.timedelta(seconds=60))
    assert (run.complete, run.pruned, run.front) == (2, 1, [(0.95, 10_000)])
    assert run.hypervolume == pytest.approx(0.2)


def test_pareto_smoke_runs_both_arms_and_writes_nothing(tmp_path):
    benchmarks = tmp_path / "BENCHMARKS.md"
    printed = _script("pareto", "--smoke", "--out", str(tmp_path / "runs"), "--benchmarks", str(benchmarks))
    assert "| size-aware | 0 |" in printed and "| none | 0 |" in printed and "Target (issue 16)" in printed
    assert not benchmarks.exists()


def test_techniques_compares_each_dataset_and_writes_its_section(tmp_path):
    """One space on Fashion-MNIST (500 images, 2 epochs, its baseline and one trial): its row has a best
    trial and a baseline; the spaces not searched are rows saying so. The study ends at its trials,
    not at the budget (ten minutes), however fast the machine."""
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")
    flags = ["--budget", "10", "--trials", "2", "--subset", "500", "--epochs", "2", "--spaces", "size"]
    flags += ["--datasets", "fashion-mnist"]
    flags += ["--out", str(tmp_path / "runs"), "--benchmarks", str(benchmarks)]
    printed = _script("techniques", *flags)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in printed.splitlines() if line[:1] == "|"]
    rows = {row[0]: row for row in cells}
    assert rows["size"][1:3] == ["fashion-mnist-size", "2"], f"its two trials complete: {rows['size']}"
    assert rows["size"][5], f"a baseline: {rows['size']}"
    assert "missing: no study of this space" in rows["dropout"][-1]
    section = benchmarks.read_text().split("<!-- techniques:start -->\n")[1]
    assert "bench/techniques.py --budget 10 --trials 2" in section and "**fashion-mnist**" in section
    assert (tmp_path / "runs" / "fashion-mnist" / "compare.png").stat().st_size > 0


def _script(name: str, *flags: str) -> str:
    """What `python bench/NAME.py FLAGS` printed; it must succeed."""
    command = [sys.executable, f"bench/{name}.py", *flags]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, timeout=LIMIT).stdout
