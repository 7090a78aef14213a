"""What a running search shows (search/progress.py): times, and an ETA the budget bounds."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.progress import Progress, format_params, format_seconds
from search.record import TrialPlan
from search.storage import open_storage


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


def _asha_study(folder: Path, paused: list[tuple[int, float]], complete: list[float]) -> optuna.Study:
    """Trials paused by asha at (rung, value), and complete ones, in one study of a SQLite file in `folder`."""
    folder.mkdir()
    study = optuna.create_study(direction="maximize", storage=open_storage(f"sqlite:///{folder / 'studies.db'}"))
    x = {"x": FloatDistribution(0, 1)}
    for rung, value in paused:
        attrs = TrialPlan(epochs=rung, pause=True).to_attrs()
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params={"x": 0.5},
                distributions=x,
                intermediate_values={rung: value},
                user_attrs=attrs,
            )
        )
    for value in complete:
        study.add_trial(create_trial(value=value, params={"x": 0.5}, distributions=x))
    return study


def test_the_bar_names_a_paused_trial_that_leads_the_complete_ones(tmp_path: Path) -> None:
    progress = Progress(100, "val_accuracy", out=io.StringIO())
    bar = progress.bar(_asha_study(tmp_path / "a", paused=[(3, 0.97), (9, 0.988)], complete=[0.9805]))
    assert "best 0.9805 (trial 2), paused leader 0.9880 (trial 1 at epoch 9)" in bar
    assert "leader" not in progress.bar(_asha_study(tmp_path / "b", paused=[(3, 0.97)], complete=[0.9805]))
    alone = progress.bar(_asha_study(tmp_path / "c", paused=[(3, 0.97)], complete=[]))
    assert "no complete trial yet, paused leader 0.9700 (trial 0 at epoch 3)" in alone
