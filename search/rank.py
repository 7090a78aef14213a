"""The leaderboard: finished trials of every study (or those named), ranked, from the storage alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from search.config import OBJECTIVES
from search.errors import UserError
from search.optuna_internals import complete_attrs
from search.optuna_internals import complete_values as complete_values_of
from search.optuna_internals import state_counts as state_counts_of
from search.record import ROW_KEYS, TrialRecord
from search.spec import metric_of
from search.storage import open_storage

if TYPE_CHECKING:
    from collections.abc import Collection

    import pandas as pd

FORMATS = ("table", "csv", "json", "markdown")


def load_studies(storage_url: str, names: list[str] | None = None) -> list[optuna.Study]:
    """The named studies (default: all) of an existing storage, or a UserError naming what is missing."""
    storage = open_storage(storage_url, must_exist=True)
    known = optuna.get_all_study_names(storage)  # summaries would read every trial of every study
    if not known:
        raise UserError(f"no studies in {storage_url}; run `make search` first")
    for name in names or []:
        if name not in known:
            raise UserError(f"no study named '{name}' in {storage_url}; known: {', '.join(known)}")
    return [optuna.load_study(study_name=name, storage=storage) for name in names or known]


_COUNTED = ("complete", "pruned", "fail", "running")


def complete_values(
    study: optuna.Study, numbers: Collection[int] | None = None
) -> dict[int, tuple[float, TrialRecord]]:
    """Trial number -> (value, its record without the per-epoch history) of every complete trial
    (or of those numbered `numbers`).

    Read with one query, not through Optuna's trial objects: those carry every parameter and
    per-epoch value too, and building them took 1 s of `search rank`'s 2 on 1,000 trials.
    """
    found = complete_attrs(study, ROW_KEYS, numbers)
    return {number: (value, TrialRecord.from_attrs(attrs)) for number, value, attrs in found}


def trial_rows(study: optuna.Study, top: int | None = None) -> list[dict]:
    """One row per complete trial: identity, outcome, cost and the key hyperparameters of its config.

    With `top`, only the rows a leaderboard of the best `top` can show: the study's best `top`
    trials, its baseline and its Pareto front. On 10,000 trials, reading the records of all of
    them was most of `search rank`'s time.
    """
    attrs = study.user_attrs
    front = pareto_numbers(study)
    complete = complete_values(study, None if top is None else _contenders(study, top, front))
    baseline = next((value for value, record in complete.values() if record.baseline), None)
    front = pareto_numbers(study)
    rows = []
    for number, (value, record) in complete.items():
        config = record.config or {}
        # A study of several objectives: its costs, and whether no other trial is as good on all and better on one.
        costs = (
            {}
            if front is None
            else {
                "pareto": number in front,
                "trainable_params": record.trainable_params,
                "latency_ms": record.latency_ms,
            }
        )
        rows.append(
            {
                "study": study.study_name,
                "space": attrs.get("space", "?"),
                "backend": attrs.get("backend", "?"),
                "trial": number,
                "objective": attrs.get("objective", "value"),
                "value": value,
                # How far the search got beyond the study's reference-model trial (positive = better).
                "vs_baseline": None if baseline is None else _gain(value - baseline, attrs.get("objective")),
                "baseline": record.baseline,
                "epochs": record.epochs_run,
                "params": record.param_count,
                "seconds": record.seconds,
                "layers": "-".join(str(u) for u in config.get("hidden_units", [])),
                "activation": config.get("activation"),
                "dropout": config.get("dropout"),
                "batchnorm": config.get("batchnorm"),
                "optimizer": config.get("optimizer"),
                "lr": config.get("learning_rate"),
                "schedule": config.get("lr_schedule"),
                "batch": config.get("batch_size"),
                **costs,
            }
        )
    return rows


def _contenders(study: optuna.Study, top: int, front: set[int] | None) -> set[int]:
    """The numbers of the study's best `top` complete trials (ties: the earlier), its baseline and its front."""
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else 1
    ranked = sorted(complete_values_of(study), key=lambda pair: (-sign * pair[1], pair[0]))
    baseline = {number for number, _, attrs in complete_attrs(study, ("baseline",)) if attrs.get("baseline")}
    return {number for number, _ in ranked[:top]} | baseline | (front or set())


def pareto_numbers(study: optuna.Study) -> set[int] | None:
    """The numbers of a multi-objective study's Pareto-optimal complete trials; None for a study of one objective."""
    if len(study.directions) == 1:
        return None
    return {trial.number for trial in study.best_trials}


def _gain(difference: float, objective: str | None) -> float:
    return -difference if _minimized(objective) else difference


def _minimized(objective: str | None) -> bool:
    """Whether a study's (first) objective is better lower: its validation metric, where it names several."""
    return OBJECTIVES.get(metric_of(objective) or "", "max") == "min"


def leaderboard(studies: list[optuna.Study], top: int | None = None, *, pareto: bool = False) -> pd.DataFrame:
    """Complete trials ranked best first; studies of different objectives are ranked separately.

    A study of several objectives is ranked by its validation metric; `pareto` keeps only its front.
    """
    import pandas as pd  # here, not above: the command line reads FORMATS for its help, and pandas takes a second

    if pareto and all(len(study.directions) == 1 for study in studies):
        raise UserError(
            "--pareto lists the front of studies of several objectives (--objective val_accuracy,params); "
            "none of these has one"
        )
    frame = pd.DataFrame([row for study in studies for row in trial_rows(study, top)])
    if pareto:  # no column: none of the studies of several objectives has a complete trial yet
        frame = frame[frame["pareto"].eq(True)] if "pareto" in frame else frame.iloc[:0]
    if frame.empty:
        return frame
    ranked = []
    for objective, group in frame.groupby("objective", sort=False):
        group = group.sort_values("value", ascending=_minimized(objective), kind="stable")
        group.insert(0, "rank", range(1, len(group) + 1))
        ranked.append(group.head(top) if top else group)
    return pd.concat(ranked, ignore_index=True)


def state_counts(studies: list[optuna.Study]) -> pd.DataFrame:
    """Per study: its space and backend, and how many trials are complete, pruned, failed or running."""
    import pandas as pd

    rows = []
    for study in studies:
        states = state_counts_of(study)
        rows.append(
            {
                "study": study.study_name,
                "space": study.user_attrs.get("space", "?"),
                "backend": study.user_attrs.get("backend", "?"),
                **{state: states[state] for state in _COUNTED},
            }
        )
    return pd.DataFrame(rows)


def leaderboard_text(
    storage_url: str, names: list[str] | None, *, top: int = 20, fmt: str = "table", pareto: bool = False
) -> str:
    """The leaderboard (and, for tables, the per-study counts) rendered in `fmt`; `pareto`: the fronts only."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; known formats: {', '.join(FORMATS)}")
    studies = load_studies(storage_url, names)
    board, counts = leaderboard(studies, top, pareto=pareto), state_counts(studies)
    if fmt == "csv":
        return board.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return board.to_json(orient="records", indent=2)
    render = _markdown if fmt == "markdown" else _table
    if board.empty:
        return "no complete trial yet\n\n" + render(counts)
    return render(board) + "\n\n" + render(counts)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _markdown(frame: pd.DataFrame) -> str:
    cells = frame.astype(object).where(frame.notna(), "").map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)
