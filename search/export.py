"""Export: a study's best (or chosen) trial, or the best within a budget, as a config file (configfile.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.artifacts import ModelStore, recorded_store
from search.backends._asha import best_value, paused_at, unfinished
from search.config import TrialConfig
from search.configfile import ConfigFile
from search.edges import boundary_warnings
from search.errors import UserError
from search.kept import kept_models, stored_model, write_model
from search.optuna_internals import state_counts, stored_trial
from search.rank import load_studies
from search.record import TrialRecord
from search.spec import identity, metric_of


def export_trial(
    storage_url: str,
    study_name: str | None = None,
    trial_number: int | None = None,
    *,
    budget: Budget | None = None,
) -> ConfigFile:
    """The best complete trial of a study (or trial `trial_number`, which must be complete), ready to write.

    `study_name` may be left out when the storage holds exactly one study. In a study of several
    objectives the best is the most accurate (by its validation metric), within `budget` if given.
    """
    study = _one_study(storage_url, study_name)
    if budget is not None:
        if trial_number is not None:
            raise UserError(f"--trial picks trial {trial_number} whatever its cost; leave out {budget.flags}")
        trial = budget.best_within(study)
    else:
        trial = _chosen_trial(study, trial_number)
    record = TrialRecord.from_attrs(trial.user_attrs)
    recorded = record.config
    if not isinstance(recorded, dict):
        raise UserError(
            f"trial {trial.number} of study '{study.study_name}' has no recorded config; "
            "only trials made by `search run` can be exported"
        )
    try:
        config = TrialConfig.from_dict(recorded, complete=True)
    except UserError as error:
        raise UserError(
            f"trial {trial.number}'s recorded config no longer fits this version's schema: {error}"
        ) from None
    # The space's best known config was queued, not drawn: its values at range edges say nothing of the ranges.
    edges = [] if record.plan.prior else boundary_warnings(trial, study.user_attrs.get("space", ""))
    warnings = [*edges, *_paused_ahead(study, trial)]
    return ConfigFile(config, _provenance(study, trial), warnings)


def _paused_ahead(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    """A warning if a trial paused by `asha`, and not continued, reached a better validation value than `trial`.

    Such a trial never trained to the end, so it cannot be exported; a search with a time budget
    finishes its leader in its last stretch (search/backends/_asha.py), but one with none, or
    whose leader's finish did not fit, leaves it paused.
    """
    if len(study.directions) > 1:
        return []
    sign = _metric_sign(study)
    leader = max(unfinished(study.get_trials(deepcopy=False)), key=lambda t: best_value(t, sign), default=None)
    if leader is None or best_value(leader, sign) <= sign * trial.value:
        return []
    return [
        f"trial {leader.number}, paused at epoch {paused_at(leader)} by the asha pruner, reached "
        f"{sign * best_value(leader, sign):.4f} validation, better than this trial's {trial.value:.4f}, but never "
        "trained to the end: resume the search with a time budget (its last stretch finishes the leader), "
        "then export again"
    ]


def _one_study(storage_url: str, name: str | None) -> optuna.Study:
    studies = load_studies(storage_url, [name] if name else None)
    if len(studies) > 1:
        names = ", ".join(s.study_name for s in studies)
        raise UserError(f"{storage_url} holds several studies ({names}); name one with --study (make export STUDY=...)")
    return studies[0]


@dataclass(frozen=True)
class Budget:
    """What `--max-params` and `--max-latency` allow: the most accurate complete trial within it is exported."""

    max_params: int | None = None
    max_latency_ms: float | None = None

    @property
    def flags(self) -> str:
        return " and ".join(
            f"{flag} {value:g}"
            for flag, value in (("--max-params", self.max_params), ("--max-latency", self.max_latency_ms))
            if value is not None
        )

    def best_within(self, study: optuna.Study) -> FrozenTrial:
        """The most accurate complete trial of a multi-objective `study` within the budget, or a UserError."""
        if len(study.directions) == 1:
            raise UserError(
                f"{self.flags} picks from the front of a study of several objectives; study '{study.study_name}' "
                "optimizes one: export its best (leave the budget out), or --trial N"
            )
        measured = {"params": self.max_params is None, "latency": self.max_latency_ms is None}
        within = []
        for trial in _complete(study):
            record = TrialRecord.from_attrs(trial.user_attrs)
            measured["params"] |= record.trainable_params is not None
            measured["latency"] |= record.latency_ms is not None
            if _at_most(record.trainable_params, self.max_params) and _at_most(record.latency_ms, self.max_latency_ms):
                within.append(trial)
        unmeasured = [name for name, known in measured.items() if not known]
        if unmeasured:
            raise UserError(
                f"study '{study.study_name}' recorded no {unmeasured[0]} of its trials; leave out {self.flags}"
            )
        if not within:
            raise UserError(
                f"no complete trial of study '{study.study_name}' is within {self.flags}; "
                f"`search rank --study {study.study_name} --pareto` lists the smallest"
            )
        return _most_accurate(study, within)


def _at_most(value: float | None, limit: float | None) -> bool:
    return limit is None or (value is not None and value <= limit)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _most_accurate(study: optuna.Study, trials: list[FrozenTrial]) -> FrozenTrial:
    """The best of `trials` by the validation metric (a multi-objective study's first value); ties: the earlier."""
    if not trials:
        _no_complete_trial(study)
    sign = _metric_sign(study)
    return min(trials, key=lambda trial: (-sign * trial.values[0], trial.number))


def _metric_sign(study: optuna.Study) -> float:
    """1 if the study maximizes its validation metric (its first objective), -1 if it minimizes it."""
    return 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0


def _no_complete_trial(study: optuna.Study) -> NoReturn:
    held = ", ".join(f"{n} {s}" for s, n in state_counts(study).items() if n) or "no trials"
    raise UserError(f"study '{study.study_name}' has no complete trial ({held}); run more trials first")


def _chosen_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    if number is None and len(study.directions) > 1:
        return _most_accurate(study, _complete(study))
    # One trial read alone, not all of them: export stays fast on a study of thousands.
    if number is None:
        try:
            return study.best_trial
        except ValueError:
            _no_complete_trial(study)
    try:
        chosen = stored_trial(study, number)
    except KeyError:
        count = len(study.get_trials(deepcopy=False))
        raise UserError(f"study '{study.study_name}' has no trial {number} (it has trials 0 to {count - 1})") from None
    if chosen.state != TrialState.COMPLETE:
        raise UserError(
            f"trial {number} of study '{study.study_name}' is {chosen.state.name}, not COMPLETE; "
            "pick a complete one (`make rank`) or leave out --trial for the best"
        )
    return chosen


def _provenance(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    attrs, record = study.user_attrs, TrialRecord.from_attrs(trial.user_attrs)
    return {
        "study": study.study_name,
        "space": attrs.get("space"),
        "backend": attrs.get("backend"),
        "trial": trial.number,
        "baseline": record.baseline,
        # The validation metric: what a retrain is compared with (search/final.py), in any study.
        "objective": metric_of(attrs.get("objective")),
        "value": trial.values[0],
        "epochs_run": record.epochs_run,
        "first_epoch": record.first_epoch,  # above 1: the trial continued a paused one's training (asha)
        "promoted_from": record.plan.continues,
        "best_epoch": record.best_epoch,
        "param_count": record.param_count,
        **_costs(study, record),
        "subset": attrs.get("subset"),
        "dataset": identity(attrs)["dataset"],  # its name (search train loads it) ...
        "dataset_checksum": record.dataset,  # ... and the contents the trial trained on (search train checks them)
        "versions": record.versions,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": attrs.get("command"),
        "stored_model": _stored_model(study, trial),  # where the search kept its model; None: not kept
    }


def _costs(study: optuna.Study, record: TrialRecord) -> dict[str, Any]:
    """A multi-objective study's objectives beside accuracy, as its trial recorded them (none in other studies)."""
    if len(study.directions) == 1:
        return {}
    return {"trainable_params": record.trainable_params, "latency_ms": record.latency_ms}


def _stored_model(study: optuna.Study, trial: FrozenTrial) -> dict[str, str] | None:
    store, model = recorded_store(study.user_attrs, study.study_name), stored_model(study, trial.number)
    return {"store": store.root, "artifact_id": model.artifact_id} if store and model else None


def write_stored_model(storage_url: str, exported: ConfigFile, path: Path) -> None:
    """Write the exported trial's kept model to `path`, or raise a UserError naming the trials that have one."""
    origin = exported.provenance
    model = origin.get("stored_model")
    retrain = "or retrain it: make train CONFIG=... (the YAML export)"
    if model is None:
        study = _one_study(storage_url, origin["study"])
        kept = [model.number for model in kept_models(study)]
        which = f"trials {', '.join(map(str, kept))} have one" if kept else "the study kept none"
        raise UserError(
            f"trial {origin['trial']} of study '{origin['study']}' has no kept model (a study keeps those of its best "
            f"--keep-models complete trials; {which}); export one of those with --trial, {retrain}"
        )
    write_model(ModelStore(model["store"], origin["study"]), model["artifact_id"], path, fix=retrain)
