"""Optuna's own samplers and pruners as backends (`tpe`, `random`, `qmc`, `cmaes`, `gp`, `nsgaii`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import optuna

from search.backends._asha import PausingBackend, rungs
from search.backends._base import Backend, BackendFactory
from search.backends._cost_aware import CostAwareTPESampler
from search.backends._size_aware import SizeAwarePruner
from search.errors import UserError
from search.spec import StudySpec
from search.weights import ContinuationWeights

# The first rung: a trial is first judged after this many epochs. One epoch ranked the trials
# of a product run as epoch 3 did with Spearman 0.96 (23 trials), and costs a third: in a
# 10-minute budget at 3 epochs a run judged 5 to 12 trials, fewer than TPE's 10 start-up draws
# (BENCHMARKS.md, "Search efficiency"). Weak trials are cheap to drop early; the promoted ones
# are judged again at 3, 9, 27 and 81 epochs.
MIN_EPOCHS = 1
ETA = 3  # the reduction factor: a third of the trials at a rung go on to the next


def _pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=MIN_EPOCHS, max_resource=epochs, reduction_factor=ETA)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=ETA)
    return optuna.pruners.NopPruner()


PRUNERS = ("asha", "hyperband", "median", "successive-halving", "size-aware", "none")
# Those that can judge a multi-objective trial: Optuna's pruners (and asha's ranks) read `trial.report`,
# which such a trial cannot take.
MULTI_OBJECTIVE_PRUNERS = ("size-aware", "none")
# The samplers tested on multi-objective studies (TPE and NSGA-II model several objectives; random ignores them).
MULTI_OBJECTIVE_BACKENDS = ("tpe", "random", "nsgaii")


def _size_aware(spec: StudySpec | None) -> SizeAwarePruner:
    """Judged by latency where the study minimizes it, else by the trainable parameters."""
    if spec is None:
        raise TypeError("the size-aware pruner needs the study's spec (its objectives)")
    measure = "latency" if "latency" in spec.objectives else "params"
    return SizeAwarePruner(measure=measure, metric=spec.metric, sign=1.0 if spec.direction == "maximize" else -1.0)


def _sampler_backend(make: Callable[[int], optuna.samplers.BaseSampler]) -> BackendFactory:
    def make_quietly(seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # TPE_SETTINGS' `gamma`: deprecated in Optuna 4.9, to go in 6, which pyproject.toml keeps out
            # (tests/test_optuna_internals.py checks that it still acts).
            warnings.filterwarnings("ignore", "`gamma` has been deprecated", FutureWarning)
            return make(seed)

    def factory(
        *,
        seed: int,
        pruner: str,
        epochs: int,
        spec: StudySpec | None = None,
        storage: str = "",
        study: str = "",
        workers: int = 1,
    ) -> Backend:
        """Optuna's samplers take any number of workers, and keep their state in the study itself."""

        def for_trial(count: int) -> optuna.samplers.BaseSampler:
            # Mixed, not added: seeds n and n+1 can draw the same first values (they do in numpy).
            return make_quietly(int(np.random.SeedSequence((seed, count)).generate_state(1)[0]))

        if pruner == "asha":
            if not study:
                raise TypeError("the asha pruner needs the study's name (its paused trials' weights go beside it)")
            return PausingBackend(
                make_sampler=for_trial,
                rungs=rungs(MIN_EPOCHS, epochs, ETA),
                eta=ETA,
                direction=spec.direction if spec else "maximize",
                weights=ContinuationWeights(storage, study),
            )
        return Backend(
            pruner=_pruner(pruner, epochs),
            make_sampler=for_trial,
            epoch_pruner=_size_aware(spec) if pruner == "size-aware" else None,
        )

    return factory


def _gp(seed: int) -> optuna.samplers.BaseSampler:
    try:
        import torch  # noqa: F401  (GPSampler needs it; fail now with a fix, not mid-search)
    except ImportError:
        raise UserError("--backend gp needs PyTorch: pip install -e '.[gp]' (or pick another backend)") from None
    return optuna.samplers.GPSampler(seed=seed)


# Multivariate TPE models parameters jointly; `group` handles the conditional parameters;
# the constant liar keeps parallel workers from all sampling next to the same good trial.
# 5 random start-up trials, not Optuna's 10: a 10-minute search on a 2-core host finished 5 to
# 12 trials, so with 10 TPE never proposed one (BENCHMARKS.md, "Search efficiency").
# A quarter of the finished trials as the good group, not Optuna's tenth: among 10-20 trials a
# tenth is the leader and its own promotions, and every later draw was its neighbour; with a
# quarter TPE tied random search at 8 minutes where it had lost (BENCHMARKS.md, "TPE's good group").
TPE_SETTINGS = {
    "n_startup_trials": 5,
    "multivariate": True,
    "group": True,
    "constant_liar": True,
    "gamma": lambda finished: min(math.ceil(0.25 * finished), 25),
}


OPTUNA_BACKENDS: dict[str, BackendFactory] = {
    "tpe": _sampler_backend(lambda seed: optuna.samplers.TPESampler(seed=seed, **TPE_SETTINGS)),
    # The same TPE, weighing each candidate by its predicted seconds per epoch (_cost_aware.py).
    "tpe-cost": _sampler_backend(lambda seed: CostAwareTPESampler(seed=seed, **TPE_SETTINGS)),
    "random": _sampler_backend(lambda seed: optuna.samplers.RandomSampler(seed=seed)),
    "qmc": _sampler_backend(lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)),
    "cmaes": _sampler_backend(lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)),
    "gp": _sampler_backend(_gp),
    "nsgaii": _sampler_backend(lambda seed: optuna.samplers.NSGAIISampler(seed=seed)),
}
