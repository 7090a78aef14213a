"""How well a trial's early epochs rank it: what successive halving's first rung can see, read from a real study.

For each pair of epochs (e, later), over the trials of a study that trained at least `later`
epochs, the Spearman rank correlation of validation accuracy at epoch e with that at `later`:
near 1, judging at e would keep the same trials as judging at `later`; near 0, the rung at e
is a coin toss. Also, per epoch, how many trials reached it and what the epochs cost (the
study's own seconds), and how many epochs each trial trained. No training: it reads the
storage. Run: .venv/bin/python bench/rungs.py --storage sqlite:///studies.db --study full-tpe
"""

from __future__ import annotations

import argparse
import collections

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.storage import open_storage

EPOCHS = (1, 3, 9, 27, 81)  # successive halving's rungs for a first rung of 1 or 3 and factor 3
MIN_TRIALS = 5  # a rank correlation over fewer trials says nothing


def curves(study: optuna.Study) -> dict[int, list[float]]:
    """Each finished trial's validation accuracy per epoch, by trial number."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return {t.number: t.user_attrs.get("history", {}).get("val_accuracy", []) for t in finished}


def correlations(by_trial: dict[int, list[float]]) -> pd.DataFrame:
    """Spearman rank correlation of the accuracy at epoch e with that at each later epoch of EPOCHS."""
    rows = []
    for later in EPOCHS[1:]:
        reached = {n: c for n, c in by_trial.items() if len(c) >= later}
        for early in (e for e in EPOCHS if e < later):
            if len(reached) < MIN_TRIALS:
                continue
            frame = pd.DataFrame(
                {"early": [c[early - 1] for c in reached.values()], "later": [c[later - 1] for c in reached.values()]}
            )
            rows.append(
                {
                    "judged at epoch": early,
                    "against epoch": later,
                    "trials": len(reached),
                    "spearman": frame.corr("spearman").iloc[0, 1],
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage, must_exist=True))
    by_trial = curves(study)
    trained = collections.Counter(len(c) for c in by_trial.values())
    print(f"study '{args.study}': {len(by_trial)} finished trials; epochs trained: count")
    print(", ".join(f"{epochs}: {count}" for epochs, count in sorted(trained.items())))
    table = correlations(by_trial)
    if table.empty:
        print(f"fewer than {MIN_TRIALS} trials reached each pair of epochs")
        return
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.2f} |")


if __name__ == "__main__":
    main()
