"""The `asha` pruner: trials pause at rungs with their weights and are promoted, never sent on blind."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.backends._asha import (
    FINISH_FILL,
    FINISH_MARGIN,
    FINISH_SHARE,
    PausingBackend,
    leader_to_finish,
    promotion,
    rungs,
    weights_path,
)
from search.record import FailReason, TrialPlan, TrialRecord
from search.study import StudySpec, run_study
from search.trials import enqueue

ETA = 3
RUNGS = [3, 9, 27]
X = {"x": FloatDistribution(0, 1)}


def test_rungs_grow_by_eta_and_end_at_the_studys_epochs() -> None:
    assert rungs(3, 100, 3) == [3, 9, 27, 81, 100]
    assert rungs(3, 27, 3) == [3, 9, 27]
    assert rungs(2, 2, 3) == [2]  # a study as short as the first rung: every trial trains to the end


def _paused(number: int, rung: int, value: float, epoch_seconds: float = 10.0, **plan: object) -> FrozenTrial:
    trial = create_trial(
        state=TrialState.PRUNED,
        params={"x": number / 100},
        distributions=X,
        intermediate_values={rung - 1: value / 2, rung: value},
        user_attrs={
            **TrialPlan(epochs=rung, pause=True, **plan).to_attrs(),
            **TrialRecord(seconds=epoch_seconds * rung, epochs_run=rung).to_attrs(),
        },
    )
    trial.number = number
    return trial


def _continuing(number: int, source: int, state: TrialState = TrialState.RUNNING, **attrs: object) -> FrozenTrial:
    trial = create_trial(
        state=state,
        params={"x": source / 100},
        distributions=X,
        value=0.5 if state == TrialState.COMPLETE else None,
        user_attrs={**TrialPlan(epochs=9, initial_epoch=3, continues=source).to_attrs(), **attrs},
    )
    trial.number = number
    return trial


def _backend_over(folder: Path, *trials: FrozenTrial) -> tuple[optuna.Study, PausingBackend]:
    """A study holding `trials`, and an asha backend over it with RUNGS, keeping weights in `folder`."""
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        study.add_trial(trial)
    backend = PausingBackend(
        make_sampler=optuna.samplers.RandomSampler, rungs=RUNGS, eta=ETA, direction="maximize", folder=folder
    )
    return study, backend


def test_no_promotion_until_eta_trials_reached_the_rung() -> None:
    # The first trial at a rung has nothing to be compared with: it waits, paused, instead of going on.
    assert promotion([_paused(0, 3, 0.9)], RUNGS, ETA, 1.0) is None
    assert promotion([_paused(0, 3, 0.9), _paused(1, 3, 0.8)], RUNGS, ETA, 1.0) is None
    three = [_paused(0, 3, 0.7), _paused(1, 3, 0.9), _paused(2, 3, 0.8)]
    assert promotion(three, RUNGS, ETA, 1.0).number == 1
    assert promotion(three, RUNGS, ETA, -1.0).number == 0  # a loss: lowest is best


def test_each_paused_trial_is_promoted_once_highest_rung_first() -> None:
    trials = [_paused(n, 3, v) for n, v in enumerate([0.7, 0.9, 0.8, 0.6, 0.5, 0.85])]
    first = promotion(trials, RUNGS, ETA, 1.0)
    assert first.number == 1
    trials.append(_continuing(6, source=1))
    assert promotion(trials, RUNGS, ETA, 1.0).number == 5  # six at the rung: the top two go on
    trials += [_continuing(7, source=5), *(_paused(n, 9, 0.95) for n in (8, 9, 10))]
    assert promotion(trials, RUNGS, ETA, 1.0).number == 8  # rung 9 has three: its best goes first


def test_a_promotion_that_did_not_run_can_be_made_again_one_that_diverged_cannot() -> None:
    trials = [_paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 3, 0.7)]
    interrupted = _continuing(3, 0, TrialState.FAIL, **FailReason.INTERRUPTED.to_attrs("interrupted"))
    assert promotion([*trials, interrupted], RUNGS, ETA, 1.0).number == 0
    diverged = _continuing(3, 0, TrialState.FAIL, **FailReason.DIVERGED.to_attrs("loss became NaN"))
    assert promotion([*trials, diverged], RUNGS, ETA, 1.0) is None


def test_the_budget_s_last_stretch_finishes_the_best_paused_trial() -> None:
    """The leader (0.95 at rung 9, 10 s an epoch) needs 18 more epochs to the cap of 27: 180 s."""
    trials = [_paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 9, 0.95), _paused(3, 3, 0.94, epoch_seconds=1)]
    needed = 10.0 * (27 - 9)
    assert leader_to_finish(trials, 27, 1.0, math.inf) is None, "no budget, no last stretch"
    assert leader_to_finish(trials, 27, 1.0, FINISH_MARGIN * needed + 1) is None, "not yet"
    leader, epochs = leader_to_finish(trials, 27, 1.0, FINISH_MARGIN * needed)
    assert (leader.number, epochs) == (2, 27)
    assert leader_to_finish(trials, 27, 1.0, needed)[1] == 27
    # Too late for the leader: the next best (24 epochs at 1 s) fits, in its own time.
    assert leader_to_finish(trials, 27, 1.0, needed - 1) is None
    assert leader_to_finish(trials, 27, 1.0, 30.0)[0].number == 3
    assert leader_to_finish(trials, 27, 1.0, 10.0) is None, "nothing fits"
    # Once it is continued, the next best is the leader; a complete trial as good as it ends the stretch.
    continuing = _continuing(4, source=2, state=TrialState.COMPLETE)
    assert leader_to_finish([*trials, continuing], 27, 1.0, 30.0)[0].number == 3
    continuing.value = 0.96
    assert leader_to_finish([*trials, continuing], 27, 1.0, 30.0) is None
    # A loss: lowest is best.
    assert leader_to_finish(trials[:3], 27, -1.0, 300.0)[0].number == 1


def test_when_no_leader_can_reach_the_cap_the_best_trains_as_far_as_the_last_share_of_the_budget_allows() -> None:
    trials = [_paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 9, 0.95)]  # the leader: 180 s to the cap of 27
    budget = 400.0
    share = FINISH_SHARE * budget  # 100 s: too little for the cap, for the leader and for the next (240 s)
    assert leader_to_finish(trials, 27, 1.0, share + 1, budget) is None, "not yet: the search goes on"
    assert leader_to_finish(trials, 27, 1.0, share, budget)[1] == 9 + int(FINISH_FILL * share / 10.0)
    assert leader_to_finish(trials, 27, 1.0, 50.0, budget)[1] == 9 + int(FINISH_FILL * 50 / 10.0)  # later, less far
    assert leader_to_finish(trials, 27, 1.0, 12.0, budget) is None, "not one epoch fits"
    assert leader_to_finish(trials, 27, 1.0, share, math.inf) is None, "no budget, no share of it"
    # A lesser leader that can reach the cap goes first, in its own time: a network trained in full.
    cheap = _paused(3, 3, 0.94, epoch_seconds=2)  # 24 epochs at 2 s: 48 s
    assert leader_to_finish([*trials, cheap], 27, 1.0, share, budget) is None, "the cheap one waits for its time"
    assert leader_to_finish([*trials, cheap], 27, 1.0, 60.0, budget) == (cheap, 27)


def test_the_finish_trains_the_leader_from_its_weights_to_the_cap(tmp_path: Path) -> None:
    saved = weights_path(tmp_path, 2)
    saved.write_bytes(b"weights")
    study, backend = _backend_over(
        tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 9, 0.95, save_weights=str(saved))
    )
    enqueue(study, backend.propose(study, seconds_left=200.0))  # the leader needs 180 s
    plan = TrialPlan.from_attrs(study.trials[3].user_attrs)
    assert (plan.continues, plan.epochs, plan.initial_epoch, plan.initial_weights) == (2, 27, 9, str(saved))
    trial = study.ask()
    assert backend.start_trial(study, trial) is None
    assert not TrialPlan.from_attrs(study.trials[3].user_attrs).pause, "trained to the cap, it completes"


def test_a_partial_finish_completes_below_the_cap(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 9, 0.95))
    enqueue(study, backend.propose(study, seconds_left=100.0, budget=400.0))  # 180 s to the cap do not fit
    trial = study.ask()
    assert backend.start_trial(study, trial) is None
    plan = TrialPlan.from_attrs(study.trials[3].user_attrs)
    assert (plan.continues, plan.epochs, plan.final, plan.pause) == (2, 9 + int(FINISH_FILL * 100 / 10.0), True, False)


def test_two_workers_promoting_one_trial_at_once_run_it_once(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 3, 0.7))
    enqueue(study, backend.propose(study))
    # Another worker, which read the trials before this one's promotion landed, promotes trial 0 too.
    study.enqueue_trial(study.trials[0].params, user_attrs=TrialPlan(epochs=9, continues=0).to_attrs())
    first, second = study.ask(), study.ask()
    assert backend.start_trial(study, first) is None
    assert backend.start_trial(study, second) == "another worker already continues trial 0"
    plan = TrialPlan.from_attrs(study.trials[first.number].user_attrs)
    assert (plan.continues, plan.epochs, plan.pause) == (0, 9, True)
    assert plan.save_weights == str(weights_path(tmp_path, first.number))
    # Trial 0's weights are not on this machine (paused by a worker elsewhere): it trains again from scratch.
    assert (plan.initial_epoch, plan.initial_weights) == (0, None)


def test_a_promotion_starts_from_the_paused_weights_when_they_are_here(tmp_path: Path) -> None:
    saved = weights_path(tmp_path, 0)
    saved.write_bytes(b"weights")
    study, backend = _backend_over(
        tmp_path, _paused(0, 3, 0.9, save_weights=str(saved)), _paused(1, 3, 0.8), _paused(2, 3, 0.7)
    )
    enqueue(study, backend.propose(study))
    plan = TrialPlan.from_attrs(study.trials[3].user_attrs)
    assert (plan.continues, plan.initial_epoch, plan.initial_weights) == (0, 3, str(saved))


@pytest.fixture(scope="module")
def asha_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FrozenTrial]]:
    """Four real tiny trials with rungs at 1 and 2 epochs: three paused, then the best of them continued."""
    folder = tmp_path_factory.mktemp("asha")
    spec = StudySpec(space="schedule", backend="random", pruner="asha", epochs=2, subset=300, baseline=False)
    url = f"sqlite:///{folder / 'studies.db'}"
    assert run_study(spec, study="s", storage=url, n_trials=4, timeout=None) == 0
    return folder, optuna.load_study(study_name="s", storage=url).get_trials()


def _best(trial: FrozenTrial) -> float:
    return max(trial.intermediate_values.values())


def test_trials_pause_at_the_first_rung_and_the_best_continues_from_its_weights(asha_study) -> None:
    folder, trials = asha_study
    first_three = trials[:3]
    for trial in first_three:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["pause"]
        assert sorted(trial.intermediate_values) == [1]
    best = max(first_three, key=_best)
    continued = trials[3]
    assert continued.user_attrs["continues"] == best.number and continued.params == best.params
    assert continued.state == TrialState.COMPLETE and sorted(continued.intermediate_values) == [2]
    assert (continued.user_attrs["first_epoch"], continued.user_attrs["initial_epoch"]) == (2, 1)
    # It started from the paused weights: its one epoch's loss is below the loss its source began with.
    assert continued.user_attrs["history"]["loss"][0] < best.user_attrs["history"]["loss"][0]
    assert not Path(best.user_attrs["save_weights"]).exists(), "a continued trial's weights were kept"
    assert Path(best.user_attrs["save_weights"]).parent == folder / ".paused" / "s"


@pytest.mark.parametrize("yardstick", [TrialPlan(baseline=True), TrialPlan(prior=True)])
def test_the_baseline_and_the_prior_train_in_full_never_paused(tmp_path: Path, yardstick: TrialPlan) -> None:
    study, backend = _backend_over(tmp_path)
    study.enqueue_trial({}, user_attrs=yardstick.to_attrs())
    trial = study.ask()
    assert backend.start_trial(study, trial) is None
    plan = TrialPlan.from_attrs(study.trials[0].user_attrs)
    assert (plan.pause, plan.epochs, plan.save_weights) == (False, None, None)
