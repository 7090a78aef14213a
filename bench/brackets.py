"""How many trials of a TPE + Hyperband study land in each Hyperband bracket (no training, about a second).

Optuna's TPESampler, under a HyperbandPruner, models only the trials of the current trial's
bracket, and samples at random until that bracket holds 10 trials (its start-up). This runs a
real TPE + Hyperband study on a one-parameter toy objective (one report per trial) and reads
each trial's bracket back from the pruner, for the pruner settings the product has used.
BENCHMARKS.md, "Search efficiency", holds the result. Run: .venv/bin/python bench/brackets.py
"""

from __future__ import annotations

import collections

import optuna

# (min_resource, max_resource): the old default, a 100-epoch cap, and that cap judged from epoch 3.
SETTINGS = ((1, 20), (1, 100), (3, 100))
TRIALS = 31  # what the 20-minute default study ran


def brackets(min_resource: int, max_resource: int) -> tuple[int, dict[int, int]]:
    """The pruner's bracket count, and how many of TRIALS trials each bracket got."""
    pruner = optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_resource, reduction_factor=3)
    sampler = optuna.samplers.TPESampler(seed=0)
    # The bracket is a hash of the study name and trial number: a fixed name, a repeatable split.
    study = optuna.create_study(study_name="full-tpe", direction="maximize", sampler=sampler, pruner=pruner)
    counts: collections.Counter[int] = collections.Counter()
    for _ in range(TRIALS):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        trial.should_prune()  # assigns the trial its bracket
        counts[pruner._get_bracket_id(study, study.get_trials(deepcopy=False)[-1])] += 1
        study.tell(trial, x)
    return pruner._n_brackets, dict(sorted(counts.items()))


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"| Hyperband | brackets | trials per bracket, of {TRIALS} |\n|---|---|---|")
    for min_resource, max_resource in SETTINGS:
        n, counts = brackets(min_resource, max_resource)
        split = " / ".join(str(counts.get(bracket, 0)) for bracket in range(n))
        print(f"| min {min_resource}, max {max_resource} epochs, factor 3 | {n} | {split} |")


if __name__ == "__main__":
    main()
