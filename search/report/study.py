"""The report of one study: optimization history, parameter importances, learning curves, parallel coordinates."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots

from search.errors import UserError
from search.rank import leaderboard, load_studies, pareto_numbers, state_counts
from search.record import TrialRecord
from search.report import REPORTS_DIR
from search.report._page import NotDrawn, Section, save_png, write_page
from search.spec import COSTS, metric_of, objectives_of

BEST_CURVES = 5  # learning curves of this many best trials: more lines make the picture unreadable
_TABLE_ROWS = 10
_TABLE_COLUMNS = ["rank", "trial", "value", "vs_baseline", "baseline", "epochs", "params", "seconds", "layers"]
_COST_COLUMNS = ["pareto", "trainable_params", "latency_ms"]  # a study of several objectives' (search/rank.py)
_CONFIG_COLUMNS = ["activation", "dropout", "batchnorm", "optimizer", "lr", "schedule", "batch"]

Note = Callable[[str], None]


def note_to_stderr(line: str) -> None:
    """Progress lines go to stderr, so that what a command prints on stdout stays its result."""
    print(line, file=sys.stderr, flush=True)


def write_study_report(storage_url: str, name: str, out: Path | None = None, note: Note = note_to_stderr) -> list[Path]:
    """Write `out`/report.html (default `reports/<name>/`) and one PNG per plot; return the page, then the PNGs.

    A plot that cannot be drawn (importances of a single trial, say) is a sentence on the page instead.

    Raises:
        UserError: no such storage or study, the study has no complete trial, or `out` cannot be a folder.
    """
    study = load_studies(storage_url, [name])[0]
    complete = complete_trials(study)
    if not complete:
        raise UserError(f"study '{name}' has no complete trial yet; let `make search` finish one, then report again")
    out = out or REPORTS_DIR / name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write the report into {out} ({error.strerror}); pass another --out") from None
    objective = metric_of(study.user_attrs.get("objective")) or "value"
    sections = [Section(f"Best trials by {objective}", table=_best_table(study, objective))]
    plots = [*_FRONT, *_PLOTS] if len(study.directions) > 1 else _PLOTS
    for title, stem, draw in plots:
        note(f"report '{name}': {title.lower()} (complete trials: {len(complete)})")
        sections.append(_draw(title, out / f"{stem}.png", lambda draw=draw: draw(study, objective)))
    page = write_page(out / "report.html", f"Study '{name}'", _intro(study, objective), sections)
    return [page, *(section.image for section in sections if section.image)]


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_trials(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The `count` best complete trials, best first, by the validation metric (a multi-objective study's first)."""
    maximize = study.directions[0] == StudyDirection.MAXIMIZE
    return sorted(complete_trials(study), key=lambda trial: trial.values[0], reverse=maximize)[:count]


def _intro(study: optuna.Study, objective: str) -> list[str]:
    attrs, counts = study.user_attrs, state_counts([study]).iloc[0]
    best = best_trials(study, 1)[0]
    directions = ", ".join(direction.name.lower() for direction in study.directions)
    front = pareto_numbers(study)
    return [
        f"Space {attrs.get('space', '?')}, backend {attrs.get('backend', '?')}, pruner {attrs.get('pruner', '?')}, "
        f"objective {attrs.get('objective', objective)} ({directions}), up to {attrs.get('epochs', '?')} epochs "
        "per trial.",
        f"Trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed, "
        f"{counts['running']} running" + ("." if front is None else f"; {len(front)} on the Pareto front."),
        f"Best: trial {best.number}, {objective} {best.values[0]:.4f}.",
        f"Reproduce or resume it with: {attrs.get('command') or '(not recorded)'}",
    ]


def _best_table(study: optuna.Study, objective: str) -> pd.DataFrame:
    board = leaderboard([study], top=_TABLE_ROWS)
    configured = [column for column in _CONFIG_COLUMNS if board[column].nunique(dropna=True) > 1]
    costs = [column for column in _COST_COLUMNS if column in board and board[column].notna().any()]
    return board[_TABLE_COLUMNS + costs + configured].rename(columns={"value": objective})


def _draw(title: str, path: Path, draw: Callable[[], Figure]) -> Section:
    path.unlink(missing_ok=True)  # an image left by an earlier report must not pass for this one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            figure = draw()
        except NotDrawn as reason:
            return Section(title, note=f"Not drawn: {reason}.")
    # Optuna's cautions (importances from too few trials, say) belong beside the plot they qualify.
    cautions = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    return Section(title, note=" ".join(cautions), image=save_png(figure, path))


def _target(study: optuna.Study) -> dict[str, Callable[[FrozenTrial], float]]:
    """What Optuna's plots draw of a multi-objective study, which they need told: its validation metric.

    None for a study of one objective, whose plots stay Optuna's own (a best-so-far line and all).
    """
    return {"target": lambda trial: trial.values[0]} if len(study.directions) > 1 else {}


def _history(study: optuna.Study, objective: str) -> Figure:
    return optuna_plots.plot_optimization_history(study, target_name=objective, **_target(study)).figure


def _importances(study: optuna.Study, objective: str) -> Figure:
    complete = complete_trials(study)
    if len(complete) < 2:
        raise NotDrawn(f"importances need at least 2 complete trials, the study has {len(complete)}")
    names = {name for trial in complete for name in trial.params}
    if all(len({repr(trial.params.get(name)) for trial in complete}) == 1 for name in names):
        raise NotDrawn("no parameter takes two different values among the complete trials")
    return optuna_plots.plot_param_importances(study, target_name=objective, **_target(study)).figure


def learning_curves(study: optuna.Study, objective: str) -> Figure:
    """Train (solid) and validation (dashed) loss per epoch of the best trials; a dot marks each best epoch.

    The train loss includes any L2 penalty, so with `l2` > 0 the gap understates overfitting a little.
    """
    records = [(trial, TrialRecord.from_attrs(trial.user_attrs)) for trial in best_trials(study, BEST_CURVES)]
    curves = [(trial, record) for trial, record in records if record.history.get("val_loss")]
    if not curves:
        raise NotDrawn("no complete trial records a per-epoch history (user attr `history`)")
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for (trial, record), colour in zip(curves, plt.get_cmap("tab10").colors, strict=False):
        history, first = record.history, record.first_epoch or 1
        epochs = range(first, first + len(history["val_loss"]))
        label = f"trial {trial.number} ({objective} {trial.values[0]:.4f})"
        axes.plot(epochs, history["loss"], color=colour, label=f"{label} train")
        axes.plot(epochs, history["val_loss"], color=colour, linestyle="--", label=f"{label} validation")
        best_epoch = record.best_epoch
        if best_epoch:
            axes.plot(best_epoch, history["val_loss"][best_epoch - first], "o", color=colour)
    axes.set_title(f"Learning curves of the {len(curves)} best trials: train (solid) and validation (dashed) loss")
    axes.set(xlabel="epoch", ylabel="cross-entropy loss")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def _parallel_coordinate(study: optuna.Study, objective: str) -> Figure:
    names = {name for trial in complete_trials(study) for name in trial.params}
    if not names:
        raise NotDrawn("the complete trials have no parameters")
    figure = optuna_plots.plot_parallel_coordinate(study, target_name=objective, **_target(study)).figure
    figure.set_size_inches(max(8.0, 1.3 * (len(names) + 1)), 5.5)  # one axis per parameter, each needs room
    return figure


def pareto_front(study: optuna.Study, objective: str) -> Figure:
    """The validation metric against the first cost on a log axis: the front joined in colour, the
    dominated trials grey, the baseline a star."""
    cost = objectives_of(study.user_attrs["objective"])[1]
    front = pareto_numbers(study) or set()
    points = {trial.number: (trial.values[1], trial.values[0]) for trial in complete_trials(study)}
    figure, axes = plt.subplots(figsize=(9, 5.5))
    dominated = [point for number, point in points.items() if number not in front]
    if dominated:
        axes.scatter(*zip(*dominated, strict=True), color="lightgrey", label=f"dominated ({len(dominated)})")
    optimal = sorted((point, number) for number, point in points.items() if number in front)
    xs, ys = [x for (x, _), _ in optimal], [y for (_, y), _ in optimal]
    axes.step(xs, ys, where="post", color="tab:blue", alpha=0.5)
    axes.scatter(xs, ys, color="tab:blue", zorder=3, label=f"Pareto-optimal ({len(optimal)})")
    for (x, y), number in optimal:
        axes.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, -10), fontsize="small")
    records = {trial.number: TrialRecord.from_attrs(trial.user_attrs) for trial in complete_trials(study)}
    baseline = next((number for number, record in records.items() if record.baseline), None)
    if baseline is not None:
        axes.scatter(
            *points[baseline], marker="*", s=250, color="tab:red", zorder=4, label=f"baseline (trial {baseline})"
        )
    axes.set_xscale("log")
    axes.set(xlabel=COSTS[cost] + " (log scale)", ylabel=objective)
    axes.set_title(f"{objective} against {COSTS[cost]}: the Pareto front of {len(points)} complete trials")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    return figure


_FRONT: list[tuple[str, str, Callable[[optuna.Study, str], Figure]]] = [("Pareto front", "pareto_front", pareto_front)]
_PLOTS: list[tuple[str, str, Callable[[optuna.Study, str], Figure]]] = [
    ("Optimization history", "history", _history),
    ("Parameter importances", "importances", _importances),
    ("Learning curves of the best trials", "learning_curves", learning_curves),
    ("Parallel coordinates", "parallel_coordinate", _parallel_coordinate),
]
