"""How well `tpe-cost` predicts a trial's seconds per epoch from the trials before it, read from a real study.

For each finished trial k (in the order they finished) with k earlier trials known, the error
of log seconds per epoch predicted by `log_cost` from those k, against predicting their mean
(what a model that learned nothing does). Reported by how many trials were known: the point
of the model is to predict from the few of a short search. Then the constants of `work`
(elastic and affine per pixel, the step's cost) refitted on the whole study, to check the
committed ones. No training: it reads the storage. Run:
.venv/bin/python bench/cost_model.py --storage sqlite:///studies.db --study full-tpe
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import optuna
from optuna.trial import TrialState

from search.backends import _cost_aware
from search.config import TrialConfig
from search.record import TrialRecord
from search.storage import open_storage
from spaces import SPACES
from spaces._catalog import config_at

KNOWN = ((1, 2), (3, 5), (5, 10), (10, 20), (20, 10_000))  # ranges of trials known before the predicted one


def _priced(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, float]]:
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    finished.sort(key=lambda t: t.datetime_complete)
    return [(t, cost) for t in finished if (cost := TrialRecord.from_attrs(t.user_attrs).seconds_per_epoch)]


def errors_by_known(study: optuna.Study) -> list[tuple[str, int, float, float]]:
    """(known, predictions, mean |error| of the model, of the mean) in log seconds, per range of `KNOWN`."""
    priced = _priced(study)
    rows = []
    for low, high in KNOWN:
        model, mean = [], []
        for k in range(max(low, 1), min(high, len(priced))):
            trial, cost = priced[k]
            before = optuna.create_study(direction="maximize")
            before.set_user_attr("space", study.user_attrs["space"])
            before.set_user_attr("base_config", study.user_attrs["base_config"])
            before.add_trials([t for t, _ in priced[:k]])
            space = {name: dist for name, dist in trial.distributions.items()}
            samples = {name: np.array([dist.to_internal_repr(trial.params[name])]) for name, dist in space.items()}
            model.append(abs(_cost_aware.log_cost(before, space, samples)[0] - math.log(cost)))
            mean.append(abs(np.mean([math.log(c) for _, c in priced[:k]]) - math.log(cost)))
        if model:
            rows.append(
                (f"{low}-{min(high, len(priced)) - 1}", len(model), float(np.mean(model)), float(np.mean(mean)))
            )
    return rows


def refit(study: optuna.Study) -> tuple[dict[str, float], float]:
    """The `work` constants that explain the whole study's seconds best (grid search), and their mean |error|."""
    priced = _priced(study)
    suggest = SPACES[study.user_attrs["space"]]
    base = TrialConfig.from_dict(study.user_attrs["base_config"])
    configs = [config_at(suggest, base, t.params) for t, _ in priced]
    seconds = np.log([cost for _, cost in priced])
    committed = {name: getattr(_cost_aware, name) for name in ("ELASTIC", "AFFINE", "STEP")}
    best = (math.inf, {})
    grid = {
        "ELASTIC": (0, 500, 1000, 2300, 5000, 10000),
        "AFFINE": (0, 300, 660, 1500, 3000),
        "STEP": (0, 5e7, 1.5e8, 4e8, 1e9),
    }
    for values in itertools.product(*grid.values()):
        constants = dict(zip(grid, values, strict=True))
        for name, value in constants.items():
            setattr(_cost_aware, name, value)
        x = np.log([_cost_aware.work(c) for c in configs])
        slope, intercept = np.polyfit(x, seconds, 1)
        error = float(np.mean(np.abs(seconds - (intercept + slope * x))))
        best = min(best, (error, {**constants, "slope": float(slope)}), key=lambda pair: pair[0])
    for name, value in committed.items():
        setattr(_cost_aware, name, value)
    return best[1], best[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///studies.db")
    parser.add_argument("--study", required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage, must_exist=True))
    print(f"{len(_priced(study))} trials with seconds per epoch in '{args.study}'\n")
    print("| trials known | predictions | model, mean abs error (log s) | their mean, same |\n|---|---|---|---|")
    for known, n, model, mean in errors_by_known(study):
        print(f"| {known} | {n} | {model:.2f} | {mean:.2f} |")
    committed = {name: getattr(_cost_aware, name) for name in ("ELASTIC", "AFFINE", "STEP")}
    constants, error = refit(study)
    print(f"\ncommitted constants {committed}; best on this study {constants}, mean abs error {error:.2f} (log s)")


if __name__ == "__main__":
    main()
