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
)
from search.record import FailReason, TrialPlan, TrialRecord
from search.study import StudySpec, run_study
from search.trials import enqueue
from search.weights import ContinuationWeights, held_weights

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
    """A SQLite study in `folder` holding `trials`, and an asha backend over it with RUNGS.

    The study records no model store, so weights go to `.paused/s/` beside its file.
    """
    url = f"sqlite:///{folder / 'studies.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    for trial in trials:
        study.add_trial(trial)
    backend = PausingBackend(
        make_sampler=optuna.samplers.RandomSampler,
        rungs=RUNGS,
        eta=ETA,
        direction="maximize",
        weights=ContinuationWeights(url, "s"),
    )
    return study, backend


def _pause_with_weights(study: optuna.Study, backend: PausingBackend, value: float, weights: bytes) -> int:
    """A new trial run as the loop runs it to the first rung (3 epochs, 10 s each), saving `weights`; its number."""
    trial = study.ask(X)
    assert backend.start_trial(study, trial) is None
    plan = TrialPlan.from_attrs(study.trials[trial.number].user_attrs)
    assert (plan.epochs, plan.pause, plan.keep_weights) == (3, True, True)
    Path(plan.save_weights).write_bytes(weights)  # what the trial's process does
    for epoch in (1, 2, 3):
        trial.report(value * epoch / 3, epoch)
    for key, attr in TrialRecord(seconds=30.0, epochs_run=3).to_attrs().items():
        trial.set_user_attr(key, attr)
    backend.trial_ending(study, trial)
    study.tell(trial, state=TrialState.PRUNED)
    return trial.number


def _started(study: optuna.Study, backend: PausingBackend) -> TrialPlan:
    """The plan of the next queued trial once the loop has asked for it and the backend started it."""
    trial = study.ask()
    assert backend.start_trial(study, trial) is None
    return TrialPlan.from_attrs(study.trials[trial.number].user_attrs)


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
    budget = 100.0 / FINISH_SHARE  # its share: 100 s
    share = FINISH_SHARE * budget  # 100 s: too little for the cap, for the leader and for the next (240 s)
    assert leader_to_finish(trials, 27, 1.0, share + 1, budget) is None, "not yet: the search goes on"
    assert leader_to_finish(trials, 27, 1.0, share, budget)[1] == 9 + int(FINISH_FILL * share / 10.0)
    assert leader_to_finish(trials, 27, 1.0, 50.0, budget)[1] == 9 + int(FINISH_FILL * 50 / 10.0)  # later, less far
    assert leader_to_finish(trials, 27, 1.0, 12.0, budget) is None, "not one epoch fits"
    assert leader_to_finish(trials, 27, 1.0, share, math.inf) is None, "no budget, no share of it"
    # A trial due next that would run into the share (a promotion of 20 s) does not hold the finish back.
    assert leader_to_finish(trials, 27, 1.0, share + 10, budget, then=20.0)[1] == 9 + int(FINISH_FILL * 110 / 10.0)
    assert leader_to_finish(trials, 27, 1.0, share + 30, budget, then=20.0) is None, "it ends before the share"
    # A lesser leader that can reach the cap goes first, in its own time: a network trained in full.
    cheap = _paused(3, 3, 0.94, epoch_seconds=2)  # 24 epochs at 2 s: 48 s
    assert leader_to_finish([*trials, cheap], 27, 1.0, share, budget) is None, "the cheap one waits for its time"
    assert leader_to_finish([*trials, cheap], 27, 1.0, 60.0, budget) == (cheap, 27)


def test_the_finish_trains_the_leader_from_its_weights_to_the_cap(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8))
    leader = _pause_with_weights(study, backend, 0.95, b"the leader's")
    enqueue(study, backend.propose(study, seconds_left=250.0))  # the leader needs 24 epochs at 10 s: 240 s
    plan = _started(study, backend)
    assert (plan.continues, plan.epochs, plan.initial_epoch, plan.final) == (leader, 27, 3, True)
    assert Path(plan.initial_weights).read_bytes() == b"the leader's"
    assert not plan.pause and not plan.keep_weights, "trained to the cap, it completes and leaves nothing"


def test_a_partial_finish_completes_below_the_cap(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 9, 0.95))
    # The leader needs 180 s to the cap, which do not fit; 100 s are its share of the budget.
    enqueue(study, backend.propose(study, seconds_left=100.0, budget=100.0 / FINISH_SHARE))
    plan = _started(study, backend)
    assert (plan.continues, plan.epochs, plan.final, plan.pause) == (2, 9 + int(FINISH_FILL * 100 / 10.0), True, False)


def test_a_promotion_that_would_run_into_the_last_share_gives_way_to_the_partial_finish(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 3, 0.7))
    budget = 100.0 / FINISH_SHARE  # its share: 100 s
    proposal = backend.propose(study, seconds_left=FINISH_SHARE * budget + 70, budget=budget)
    assert (proposal.plan.epochs, proposal.plan.final) == (9, False), "the promotion (60 s) ends before the share"
    proposal = backend.propose(study, seconds_left=FINISH_SHARE * budget + 10, budget=budget)
    fits = int(FINISH_FILL * (FINISH_SHARE * budget + 10) / 10.0)
    assert (proposal.plan.continues, proposal.plan.epochs, proposal.plan.final) == (0, 3 + fits, True)


def test_two_workers_promoting_one_trial_at_once_run_it_once(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path, _paused(0, 3, 0.9), _paused(1, 3, 0.8), _paused(2, 3, 0.7))
    enqueue(study, backend.propose(study))
    # Another worker, which read the trials before this one's promotion landed, promotes trial 0 too.
    study.enqueue_trial(study.trials[0].params, user_attrs=TrialPlan(epochs=9, continues=0).to_attrs())
    first, second = study.ask(), study.ask()
    assert backend.start_trial(study, first) is None
    assert backend.start_trial(study, second) == "another worker already continues trial 0"
    plan = TrialPlan.from_attrs(study.trials[first.number].user_attrs)
    assert (plan.continues, plan.epochs, plan.pause, plan.keep_weights) == (0, 9, True, True)
    # Trial 0 left no weights (paused by a worker whose store this one cannot reach): it trains again from scratch.
    assert (plan.initial_epoch, plan.initial_weights) == (0, None)


def test_a_promotion_starts_from_a_scratch_copy_of_the_paused_weights(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path)
    numbers = [_pause_with_weights(study, backend, value, f"{value}".encode()) for value in (0.8, 0.9, 0.7)]
    assert [a.number for a in held_weights(study)] == numbers
    assert len(list((tmp_path / ".paused" / "s").iterdir())) == 3, "the study has no store: beside its file"
    enqueue(study, backend.propose(study))
    plan = _started(study, backend)
    assert (plan.continues, plan.initial_epoch) == (numbers[1], 3)
    assert Path(plan.initial_weights).read_bytes() == b"0.9"
    assert Path(plan.initial_weights).parent == backend.weights.scratch


def test_a_retried_continuation_fetches_the_weights_again(tmp_path: Path) -> None:
    """Optuna's retry of a killed trial copies its user attrs: the first try's scratch paths, of a dead process."""
    study, backend = _backend_over(tmp_path)
    source = _pause_with_weights(study, backend, 0.9, b"weights")
    dead = TrialPlan(epochs=9, continues=source, initial_epoch=3, initial_weights="/gone/from.h5", save_weights="/gone")
    study.enqueue_trial(study.trials[source].params, user_attrs=dead.to_attrs())
    plan = _started(study, backend)
    assert Path(plan.initial_weights).read_bytes() == b"weights"
    assert Path(plan.save_weights).parent == backend.weights.scratch


def test_a_trial_paused_by_an_older_version_is_continued_from_its_file(tmp_path: Path) -> None:
    saved = tmp_path / ".paused" / "s" / "trial_0.weights.h5"  # where versions before the artifacts kept them
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"old")
    study, backend = _backend_over(
        tmp_path, _paused(0, 3, 0.9, save_weights=str(saved)), _paused(1, 3, 0.8), _paused(2, 3, 0.7)
    )
    enqueue(study, backend.propose(study))
    plan = _started(study, backend)
    assert (plan.continues, plan.initial_epoch, plan.initial_weights) == (0, 3, str(saved))


def test_weights_that_cannot_be_kept_say_why_and_the_trial_goes_on(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path)
    (tmp_path / ".paused").mkdir()
    (tmp_path / ".paused" / "s").write_text("a file where the store's folder goes")
    number = _pause_with_weights(study, backend, 0.9, b"w")
    trial = study.trials[number]
    assert trial.state == TrialState.PRUNED
    assert TrialRecord.from_attrs(trial.user_attrs).weights_not_kept.startswith("FileExistsError")
    assert held_weights(study) == [] and list(backend.weights.scratch.iterdir()) == []


def test_weights_no_promotion_will_read_are_forgotten_record_and_file(tmp_path: Path) -> None:
    study, backend = _backend_over(tmp_path)
    numbers = [_pause_with_weights(study, backend, value, b"w") for value in (0.8, 0.9, 0.7)]
    enqueue(study, backend.propose(study))
    trial = study.ask()
    backend.start_trial(study, trial)
    backend.trial_finished(study, study.trials[numbers[0]])
    assert len(held_weights(study)) == 3, "the promoted trial's weights stay while its continuation runs"
    study.tell(trial, 0.95)  # the continuation ends (it saved no weights of its own)
    backend.trial_finished(study, study.trials[trial.number])
    held = [a.number for a in held_weights(study)]
    assert held == [numbers[0], numbers[2]], "only the continued trial's weights go; the others may be promoted"
    assert len(list((tmp_path / ".paused" / "s").iterdir())) == 2


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
    # The weights went to the study's model store beside its file; the continued trial's are forgotten.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'studies.db'}")
    held = held_weights(study)
    assert {a.number for a in held} == {t.number for t in first_three} - {best.number}
    assert {a.artifact_id for a in held} <= {p.name for p in (folder / "studies.artifacts" / "s").iterdir()}


@pytest.mark.parametrize("yardstick", [TrialPlan(baseline=True), TrialPlan(prior=True)])
def test_the_baseline_and_the_prior_train_in_full_never_paused(tmp_path: Path, yardstick: TrialPlan) -> None:
    study, backend = _backend_over(tmp_path)
    study.enqueue_trial({}, user_attrs=yardstick.to_attrs())
    trial = study.ask()
    assert backend.start_trial(study, trial) is None
    plan = TrialPlan.from_attrs(study.trials[0].user_attrs)
    assert (plan.pause, plan.epochs, plan.save_weights) == (False, None, None)
