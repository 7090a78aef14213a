"""Asynchronous successive halving with paused trials: the `asha` pruner, the default.

Optuna's successive-halving pruner judges a trial when it reaches a rung, against the trials
that reached the rung before it, and promotes the top third; a trial with no one to compare with
is the top third of one, so it goes on. In a short study the first trial therefore trains to the
cap alone, and it took a 10-minute budget whole (BENCHMARKS.md, "Search efficiency").

ASHA as Li et al. (2020) wrote it never sends a trial on blind. Every trial stops at its rung,
paused, with its weights saved; it is recorded as pruned there, so Optuna's tools, the dashboard
and TPE read it as a pruned trial. Before each new trial the driver asks for a promotion: a
paused trial in the top 1/eta of at least eta trials at its rung (the highest rung first) is
continued by a new trial with the same params, from its weights, up to the next rung. Otherwise
the sampler draws a new trial for the first rung. The trial that trains to the study's epochs
completes, and its value is its best epoch's.

**The budget's last stretch finishes the leader.** In a time budget the top rungs fill slowly:
to complete a trial at the cap, 3 trials must reach rung 81, 9 rung 27, and so on; in an hour on
a 2-core host none did, so the study's best complete trial was its baseline and `search export`
gave the reference model. So once the time left is no more than `FINISH_MARGIN` times what the
leader still needs (the best paused trial, if it beats every complete one: its seconds per epoch
times the epochs to the cap), and the finish still fits, that trial is continued straight to
the cap from its weights, and the study ends with its best config trained in full. If the best
cannot make it, the next best that can goes in its own time. When no leader can reach the cap any
more (in a 10-minute search, 1024-wide networks paused at rung 9), the best trains on instead,
once `FINISH_SHARE` of the run's budget is left (or would be, after the promotion due next), as
far as the time left allows, and completes there: its rate anneals over that stretch, so the
search ends with an annealed network, not a paused one at a high rate. Without that partial
finish, a short search with costly leaders ended with all of them paused at epochs 9-14
(BENCHMARKS.md, "tpe + asha against random + asha on an AVX-512 host").

Rungs are 1, 3, 9, 27, 81 epochs and then the study's epochs (100 by default). A paused trial's
weights are an artifact of it in the study's model store (search/weights.py), so a worker on any
machine that reaches the store continues from them. A promotion whose weights are gone (swept, or
kept beside a storage on another machine) trains from scratch to the next rung: slower, same result.
"""

from __future__ import annotations

import math
from dataclasses import replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.backends._base import Backend, Proposal
from search.record import FailReason, TrialPlan, TrialRecord
from search.weights import ContinuationWeights

# Finish the leader once the time left is at most this many times its training to the cap: the
# check comes between trials, so the window must be wider than a trial for the loop not to miss it.
FINISH_MARGIN = 1.5
# The share of a run's budget left when a leader that cannot reach the cap trains as far as it can.
# Half, not a quarter: in 8-minute runs on 2 cores a quarter gave the leader 2-8 more epochs, half
# gave it 12-46, and raised the best of every run of tpe and random search (BENCHMARKS.md, "The
# partial finish on half the budget").
FINISH_SHARE = 0.5
# Of the time left, what that partial finish plans to train for. The rest covers its start (fork, model,
# compilation), which its source's seconds per epoch do not show, and a finish that starts late: at
# 0.9 a 9-minute benchmark run's finish was still training when the run's time was up.
FINISH_FILL = 0.75


def rungs(first: int, epochs: int, eta: int) -> list[int]:
    """The epochs at which trials pause: first, first * eta, ... below `epochs`, then `epochs`."""
    found = []
    rung = first
    while rung < epochs:
        found.append(rung)
        rung *= eta
    return [*found, epochs]


class PausingBackend(Backend):
    """An Optuna sampler whose trials pause at rungs and are promoted from their weights (module docstring)."""

    def __init__(self, *, rungs: list[int], eta: int, direction: str, weights: ContinuationWeights, **backend) -> None:
        super().__init__(pruner=optuna.pruners.NopPruner(), **backend)
        self.rungs, self.eta, self.weights = rungs, eta, weights
        self.sign = 1.0 if direction == "maximize" else -1.0

    def describe(self) -> dict:
        return {**super().describe(), "pruner_class": "asha", "rungs": self.rungs}

    def propose(self, study: optuna.Study, seconds_left: float = math.inf, budget: float = math.inf) -> Proposal | None:
        """The leader's finish or the best promotion, if one is due; else None: the sampler draws a new trial."""
        trials = study.get_trials(deepcopy=False)
        due = promotion(trials, self.rungs, self.eta, self.sign)
        next_rung = self.rungs[self.rungs.index(paused_at(due)) + 1] if due is not None else 0
        then = _seconds_to(due, next_rung) if due is not None else 0.0
        if (finish := leader_to_finish(trials, self.rungs[-1], self.sign, seconds_left, budget, then)) is not None:
            source, epochs = finish
            return _continuation(source, epochs, final=True)
        return _continuation(due, next_rung) if due is not None else None

    def start_trial(self, study: optuna.Study, trial: optuna.Trial) -> str | None:
        """Give a new trial the first rung, a continuation its source's weights, and every trial below the
        last rung a place for its own.

        A trial that continues one another trial already continues is refused (two workers promoted it at once).
        """
        plan = TrialPlan.from_attrs(trial.user_attrs)
        if plan.baseline or plan.prior:
            # The yardsticks train in full, never paused: the reference model as the note trains it, and the
            # space's best known config to the cap, which the search must beat (and `export` gets at worst).
            return None
        if plan.continues is not None and _continued(study.get_trials(deepcopy=False))[plan.continues] != trial.number:
            return f"another worker already continues trial {plan.continues}"
        epochs = plan.epochs or self.rungs[0]
        if epochs < self.rungs[-1] and not plan.final:
            plan = replace(plan, epochs=epochs, pause=True, keep_weights=True)
        self.weights.start(study, trial, plan)
        return None

    def trial_ending(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.weights.keep(study, trial)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Forget the weights no promotion will read: those of ended trials continued already, or far from promotion.

        Weights a continuation waiting or running may still read stay (a killed one is retried from them).
        """
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        needed = {t.number for t in promotable_soon(trials, self.rungs, self.eta, self.sign)}
        for source, number in _continued(trials).items():
            if by_number[number].state.is_finished():
                needed.discard(source)
            else:
                needed.add(source)
        self.weights.forget(study, needed)


def _continuation(source: FrozenTrial, epochs: int, final: bool = False) -> Proposal:
    """A trial with `source`'s params that trains on from its weights (when it starts) to `epochs`.

    `final`: the last stretch's finish, which completes at `epochs` even below the cap.
    """
    return Proposal(source.params, TrialPlan(epochs=epochs, continues=source.number, final=final))


def promotion(trials: list[FrozenTrial], rungs: list[int], eta: int, sign: float) -> FrozenTrial | None:
    """The paused trial to continue next: in the top 1/eta of its rung and not continued yet, highest rung first."""
    taken = _continued(trials)
    for rung in reversed(rungs[:-1]):
        ranked = _ranked(trials, rung, sign)
        for trial in ranked[: len(ranked) // eta]:
            if trial.number not in taken:
                return trial
    return None


def leader_to_finish(
    trials: list[FrozenTrial],
    epochs: int,
    sign: float,
    seconds_left: float,
    budget: float = math.inf,
    then: float = 0.0,
) -> tuple[FrozenTrial, int] | None:
    """The paused trial to train on now and the epoch it trains to, so that it completes within `seconds_left`; or None.

    Of the paused trials not continued yet that beat every complete trial (`leaders`), best first:
    the first whose finish to `epochs` (its seconds per epoch, as recorded, times the epochs it
    needs) still fits in the time left, once the time left is at most FINISH_MARGIN times that
    finish; until then, none: the best waits for its time rather than a lesser one going first. If
    no leader's finish fits any more, the best trains as far as FINISH_FILL of the time left allows,
    once no more than FINISH_SHARE of the run's `budget` is left, or would be after the trial due
    next (a promotion that takes `then` seconds): the finish does not wait behind it. (A 4 x 1024
    promotion of 138 s that started 2 s short of the share ran past an 8-minute run's end, and the
    run ended with no trial complete.)
    """
    if math.isinf(seconds_left):
        return None
    costed = [
        (t, cost) for t in leaders(trials, sign) if (cost := TrialRecord.from_attrs(t.user_attrs).seconds_per_epoch)
    ]
    for leader, cost in costed:
        needed = cost * (epochs - paused_at(leader))
        if seconds_left > FINISH_MARGIN * needed:
            return None
        if needed <= seconds_left:
            return leader, epochs
    if not costed or math.isinf(budget) or seconds_left - then > FINISH_SHARE * budget:
        return None
    best, cost = costed[0]
    epochs_that_fit = int(FINISH_FILL * seconds_left / cost)
    return (best, paused_at(best) + epochs_that_fit) if epochs_that_fit > 0 else None


def _seconds_to(trial: FrozenTrial, epoch: int) -> float:
    """What training paused trial `trial` on to `epoch` would take, at its recorded seconds per epoch (0 if unknown)."""
    cost = TrialRecord.from_attrs(trial.user_attrs).seconds_per_epoch or 0.0
    return cost * (epoch - (paused_at(trial) or 0))


def leaders(trials: list[FrozenTrial], sign: float) -> list[FrozenTrial]:
    """The paused trials not continued that beat every complete trial, best first (by their best value)."""
    complete = [sign * t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ahead = [t for t in unfinished(trials) if best_value(t, sign) > max(complete, default=-math.inf)]
    return sorted(ahead, key=lambda t: -best_value(t, sign))


def unfinished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The paused trials that no trial continues (nor will): trained only to their rung."""
    taken = _continued(trials)
    return [t for t in trials if t.number not in taken and paused_at(t) is not None]


def promotable_soon(trials: list[FrozenTrial], rungs: list[int], eta: int, sign: float) -> list[FrozenTrial]:
    """Paused trials in the top half of their rung: those a few more arrivals could put in its top 1/eta.

    A trial further down needs half as many trials again, all worse than it, before its turn; if
    that happens, it trains again from scratch (see the module docstring).
    """
    found = []
    for rung in rungs[:-1]:
        ranked = _ranked(trials, rung, sign)
        found += ranked[: max(eta, math.ceil(len(ranked) / 2))]
    return found


def _ranked(trials: list[FrozenTrial], rung: int, sign: float) -> list[FrozenTrial]:
    """The trials paused at `rung`, best first, by their best reported value."""
    return sorted((t for t in trials if paused_at(t) == rung), key=lambda t: -best_value(t, sign))


def paused_at(trial: FrozenTrial) -> int | None:
    """The rung a trial paused at (asha), or None for a trial that did not pause (or reported nothing)."""
    plan = TrialPlan.from_attrs(trial.user_attrs)
    paused = trial.state == TrialState.PRUNED and trial.intermediate_values and plan.pause
    return plan.epochs if paused else None


def best_value(trial: FrozenTrial, sign: float) -> float:
    """A trial's best reported value, higher is better."""
    return max(sign * v for v in trial.intermediate_values.values())


def _continued(trials: list[FrozenTrial]) -> dict[int, int]:
    """Paused trial -> the first trial continuing it, among continuations that ran or will run.

    A continuation interrupted, killed or refused as surplus did not use its promotion: the trial
    it continues may be promoted again. One that diverged did.
    """
    continued: dict[int, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        source = TrialPlan.from_attrs(t.user_attrs).continues
        if source is None or source in continued:
            continue
        if t.state != TrialState.FAIL or FailReason.from_attrs(t.user_attrs) == FailReason.DIVERGED:
            continued[source] = t.number
    return continued
