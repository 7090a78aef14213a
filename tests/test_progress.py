"""What a running search shows (search/progress.py): times, and an ETA the budget bounds."""

from __future__ import annotations

import io

import pytest

from search.progress import Progress, format_params, format_seconds


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59.6, "1m00s"), (61, "1m01s"), (3600, "1h00m"), (float("inf"), "?")]
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown


def test_format_params_rounds_floats_only() -> None:
    assert format_params({"lr": 0.0012345, "units": 512, "act": "relu"}) == "lr=0.001234 units=512 act=relu"


def _after_one_trial_of(seconds: float, n_trials: int, timeout: float | None) -> Progress:
    """A progress that started `seconds` ago and has trained one trial (its pace: `seconds` a trial)."""
    progress = Progress(n_trials, "val_accuracy", out=io.StringIO(), timeout=timeout)
    progress.started -= seconds
    progress.deadline -= seconds
    progress.trained_here = 1
    return progress


def test_eta_is_the_trials_pace_when_the_budget_is_far() -> None:
    assert _after_one_trial_of(60, n_trials=5, timeout=None).eta(done=1) == pytest.approx(240, abs=1)
    assert _after_one_trial_of(60, n_trials=5, timeout=3600).eta(done=1) == pytest.approx(240, abs=1)


def test_eta_is_the_budget_s_rest_when_that_comes_first() -> None:
    # 100 trials at 60 s each would be 99 minutes more; the budget ends in 9.
    assert _after_one_trial_of(60, n_trials=100, timeout=600).eta(done=1) == pytest.approx(540, abs=1)


def test_eta_is_zero_past_the_budget() -> None:
    assert _after_one_trial_of(700, n_trials=100, timeout=600).eta(done=1) == 0
