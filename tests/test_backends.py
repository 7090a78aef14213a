"""Every backend with every space (proposals, no training); every pruner and space on a real run: one contract.

Backends and spaces come from their registries, so a new one is tested here without editing a list.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
from conftest import drive
from optuna.trial import FixedTrial, TrialState

from search.backends import BACKENDS, PRUNERS, get_backend
from search.config import TrialConfig
from search.storage import open_storage
from search.study import StudySpec, open_study, run_study
from spaces import SPACES

# The oracles are driven with ask/tell here, which Optuna's heartbeat storage warns about.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),  # kt-bayesian on made-up scores
]
# Past Optuna's random start-up (10 trials), so that the model-based proposals of TPE, CMA-ES and
# the Gaussian process meet each space too.
PROPOSALS = 11


def _opened(tmp_path: Path, spec: StudySpec) -> tuple[object, optuna.Study]:
    """A backend and its study as `search run` opens them."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    backend = get_backend(spec.backend)(
        seed=0, pruner=spec.pruner, epochs=spec.epochs, study="s", spec=spec, storage=url
    )
    return backend, open_study(open_storage(url), "s", spec, backend)


def _score(config: TrialConfig) -> float:
    """A made-up accuracy that prefers wider first layers and rates near 0.003, for the models to learn."""
    return 0.9 + 0.05 * min(config.hidden_units[0], 1024) / 1024 - abs(config.learning_rate - 0.003)


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("backend_name", list(BACKENDS))
def test_every_backend_proposes_valid_configs_of_every_space(tmp_path: Path, backend_name: str, space: str) -> None:
    # One epoch: nothing trains here, so a Hyperband oracle must have no weights to continue from.
    spec = StudySpec(space=space, backend=backend_name, pruner="none", epochs=1, baseline=False, prior=False)
    backend, study = _opened(tmp_path, spec)
    assert drive(backend, study, space, _score, limit=PROPOSALS) == PROPOSALS
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * PROPOSALS
    for trial in trials:
        assert trial.distributions.keys() == trial.params.keys()
        assert all(d._contains(d.to_internal_repr(trial.params[k])) for k, d in trial.distributions.items())
        # The recorded params alone rebuild the trial's config: what `search export` relies on.
        SPACES[space](FixedTrial(trial.params), TrialConfig())
    assert len({tuple(sorted(t.params.items())) for t in trials}) > PROPOSALS // 2, "the backend repeats itself"


# Tiny real runs (real training): every pruner and every space trains once, each with another
# backend, in the registries' order. The backends left without one (nsgaii, kt-random) sample
# through the same forked trial as the others; their proposals are checked above, and Keras
# Tuner's oracles all train for real in test_backends_kt.
TRAINED_ELSEWHERE = ("kt-bayesian", "kt-hyperband")
REAL_RUNS = list(
    zip(
        [name for name in BACKENDS if name not in TRAINED_ELSEWHERE],
        itertools.cycle(PRUNERS),
        itertools.cycle(SPACES),
        strict=False,
    )
)[: max(len(PRUNERS), len(SPACES))]
assert {space for *_, space in REAL_RUNS} == set(SPACES) and {pruner for _, pruner, _ in REAL_RUNS} == set(PRUNERS)


@pytest.mark.parametrize(("backend_name", "pruner", "space"), REAL_RUNS)
def test_every_backend_runs_a_tiny_real_study_with_the_named_sampler_and_pruner(
    tmp_path: Path, backend_name: str, pruner: str, space: str
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(space=space, backend=backend_name, pruner=pruner, epochs=2, subset=200, baseline=False)
    assert run_study(spec, study="s", storage=url, n_trials=2, timeout=None) == 0
    study = optuna.load_study(study_name="s", storage=url)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 2, states
    assert TrialState.RUNNING not in states
    assert study.user_attrs["backend"] == backend_name and study.user_attrs["pruner"] == pruner
    # The classes the study records are the ones the names promise ("kt-bayesian": BayesianOptimizationOracle,
    # "tpe-cost": CostAwareTPESampler).
    algorithm = study.user_attrs.get("oracle_class", study.user_attrs["sampler_class"])
    assert backend_name.removeprefix("kt-").split("-")[0] in algorithm.lower(), algorithm
    if "oracle_class" not in study.user_attrs:
        expected_pruner = "nop" if pruner == "none" else pruner.replace("-", "")
        assert expected_pruner in study.user_attrs["pruner_class"].lower(), study.user_attrs["pruner_class"]
        # ... and each trial's process samples with that class too (Backend.make_sampler).
        backend = get_backend(backend_name)(seed=0, pruner=pruner, epochs=2, study="x", spec=spec, storage=url)
        assert type(backend.make_sampler(1)).__name__ == study.user_attrs["sampler_class"]
