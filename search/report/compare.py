"""The technique comparison: per search space, what its best study bought over the reference model, and at what cost."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial

from search.data import title
from search.optuna_internals import state_counts
from search.rank import load_studies
from search.record import TrialRecord
from search.report import COMPARE_DIR
from search.report._page import Section, markdown_table, save_png, write_page
from search.report.study import Note, complete_trials, note_to_stderr
from search.spec import identity
from spaces import SPACES

# Accuracy is the one number comparable across spaces; val_loss studies rank by another scale.
COMPARED_OBJECTIVE = "val_accuracy"
# The note's question, how big a network must be: the smallest trial this close to the best (0.1 point).
NEAR_BEST = 0.001
# Column name -> how the table shows it; the frame keeps the numbers.
_SHOWN = {
    "space": "{}",
    "study": "{}",
    "complete": "{:.0f}",
    "best_trial": "{:.0f}",
    "best_val_accuracy": "{:.4f}",
    "baseline_val_accuracy": "{:.4f}",
    "gain": "{:+.4f}",
    "loss_gap": "{:.3f}",
    "baseline_loss_gap": "{:.3f}",
    "params": "{:,.0f}",
    "smallest_near_best": "{:.0f}",
    "smallest_params": "{:,.0f}",
    "best_trial_seconds": "{:.0f}",
    "study_seconds": "{:.0f}",
    "note": "{}",
}


def compare_spaces(studies: list[optuna.Study]) -> pd.DataFrame:
    """One row per space of `spaces.SPACES`, in its order: the best study of that space, or why there is none.

    Per space, the study with the best val_accuracy trial among the studies whose `space` attr
    names it. `loss_gap` is validation minus training loss at the best epoch of the best trial
    (overfitting); `baseline_*` are the study's reference-model trial; seconds are training time;
    `smallest_near_best` is the complete trial with the fewest parameters within `NEAR_BEST` of the best.
    """
    return pd.DataFrame([_row(space, [s for s in studies if s.user_attrs.get("space") == space]) for space in SPACES])


def write_comparison(
    storage_url: str, dataset: str, out: Path | None = None, note: Note = note_to_stderr
) -> tuple[str, Path]:
    """Write `out`/compare.html and compare.png (default `reports/compare/`) for the studies of `dataset`
    (techniques buy different amounts on different data); return the Markdown table and the page."""
    studies = [s for s in load_studies(storage_url) if identity(s.user_attrs)["dataset"] == dataset]
    note(f"compare: {len(studies)} studies of {dataset} over the spaces {', '.join(SPACES)}")
    frame = compare_spaces(studies)
    out = out or COMPARE_DIR
    out.mkdir(parents=True, exist_ok=True)
    note("compare: drawing the chart")
    image = save_png(_chart(frame), out / "compare.png")
    shown = _shown(frame)
    missing = frame.loc[frame["study"] == "", "space"].tolist()
    intro = [
        f"Studies of {title(dataset)}.",
        f"Each space's best {COMPARED_OBJECTIVE} study; gain is over that study's reference-model trial (baseline).",
        "loss gap = validation minus training loss at the best epoch: larger means more overfitting.",
        f"Missing spaces: {', '.join(missing) or 'none'}.",
    ]
    sections = [Section("Per space", table=shown), Section("Chart", image=image)]
    page = write_page(out / "compare.html", "What each technique bought", intro, sections)
    return markdown_table(shown), page


def _row(space: str, studies: list[optuna.Study]) -> dict:
    row = dict.fromkeys(_SHOWN, math.nan) | {"space": space, "study": "", "complete": 0, "note": ""}
    usable = [s for s in studies if s.user_attrs.get("objective") == COMPARED_OBJECTIVE]
    scored = [(study, study.best_trial) for study in usable if complete_trials(study)]
    if not scored:
        row["note"] = "missing: " + (
            "no study of this space"
            if not studies
            else f"no {COMPARED_OBJECTIVE} study"
            if not usable
            else f"no complete trial in {', '.join(s.study_name for s in usable)}"
        )
        return row
    study, best = max(scored, key=lambda pair: pair[1].value)
    records = {t.number: TrialRecord.from_attrs(t.user_attrs) for t in study.get_trials(deepcopy=False)}
    baseline = next((t for t in complete_trials(study) if records[t.number].baseline), None)
    row |= {
        "study": study.study_name,
        "complete": len(complete_trials(study)),
        "best_trial": best.number,
        "best_val_accuracy": best.value,
        "loss_gap": loss_gap(best),
        "params": _or_nan(records[best.number].param_count),
        **_smallest_near(complete_trials(study), records, best.value),
        "best_trial_seconds": _or_nan(records[best.number].seconds),
        "study_seconds": sum(record.seconds or 0.0 for record in records.values()),
        "note": _note(study, baseline, len(complete_trials(study))),
    }
    if baseline:
        row |= {
            "baseline_val_accuracy": baseline.value,
            "gain": best.value - baseline.value,
            "baseline_loss_gap": loss_gap(baseline),
        }
    return row


def _note(study: optuna.Study, baseline: FrozenTrial | None, complete: int) -> str:
    """What the row cannot show: a missing baseline, or a search none of whose trials finished."""
    if baseline is None:
        return "no baseline trial in this study"
    stopped = state_counts(study)["pruned"]
    if complete == 1 and stopped:
        return (
            f"only the baseline finished: {stopped} trials stopped early (pruned, or paused by asha); "
            "run longer, or search with --pruner none"
        )
    return ""


def _smallest_near(trials: list[FrozenTrial], records: dict[int, TrialRecord], best: float) -> dict[str, float]:
    """The trial with the fewest parameters among those within `NEAR_BEST` of `best` (ties: the earlier)."""
    near = [t for t in trials if t.value >= best - NEAR_BEST and records[t.number].param_count is not None]
    if not near:
        return {}
    smallest = min(near, key=lambda t: (records[t.number].param_count, t.number))
    return {"smallest_near_best": smallest.number, "smallest_params": records[smallest.number].param_count}


def loss_gap(trial: FrozenTrial) -> float:
    """Validation minus training loss at the trial's best epoch (NaN when it records no history)."""
    record = TrialRecord.from_attrs(trial.user_attrs)
    history, best_epoch = record.history, record.best_epoch
    if not best_epoch or not history.get("val_loss"):
        return math.nan
    index = best_epoch - (record.first_epoch or 1)
    return history["val_loss"][index] - history["loss"][index]


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as text: numbers formatted per column, blanks where a space has no value."""
    return pd.DataFrame(
        {column: [_cell(value, template) for value in frame[column]] for column, template in _SHOWN.items()}
    )


def _cell(value: object, template: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return template.format(value)


def _chart(frame: pd.DataFrame) -> Figure:
    """Four panels over the spaces: accuracy and overfitting against the baseline, size and time."""
    rows = frame[["space", "study"]].itertuples(index=False)
    labels = [space if study else f"{space}\n(missing)" for space, study in rows]
    x = list(range(len(labels)))  # numeric positions: a missing space keeps its place and its label
    figure, panels = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True)
    _dots(panels[0, 0], x, frame["best_val_accuracy"], frame["baseline_val_accuracy"], "best validation accuracy")
    gap_title = "overfitting: val - train loss at the best epoch"
    _dots(panels[0, 1], x, frame["loss_gap"], frame["baseline_loss_gap"], gap_title)
    panels[1, 0].bar(x, frame["params"], color="tab:blue")
    panels[1, 0].set(title="parameters of the best trial", yscale="log")
    panels[1, 1].bar(x, frame["study_seconds"], color="tab:gray", label="whole study")
    panels[1, 1].plot(x, frame["best_trial_seconds"], "D", color="tab:red", label="best trial")
    panels[1, 1].set(title="training time (s)")
    panels[1, 1].legend(fontsize="small")
    for axes in panels.flat:
        axes.grid(axis="y", alpha=0.3)
        axes.set_xticks(x, labels)
        axes.set_xlim(-0.5, len(x) - 0.5)
    figure.suptitle(f"What each technique bought: the best {COMPARED_OBJECTIVE} study of each space")
    figure.tight_layout()
    return figure


def _dots(axes: plt.Axes, x: list[int], best: pd.Series, baseline: pd.Series, title: str) -> None:
    """Best trial (dot) against the baseline (diamond), joined by a line: the line is what the space bought."""
    for position, low, high in zip(x, baseline, best, strict=True):
        axes.plot([position, position], [low, high], color="lightgray", zorder=1)
        if math.isfinite(high):
            axes.annotate(f"{high:.4g}", (position, high), xytext=(6, 0), textcoords="offset points", va="center")
    axes.plot(x, best, "o", color="tab:green", label="best trial", zorder=2)
    axes.plot(x, baseline, "D", color="black", markerfacecolor="none", label="baseline (reference model)")
    axes.set_title(title)
    axes.legend(fontsize="small")
