"""The study's best models: a complete trial's model is kept, as an Optuna artifact of it, while among the best K.

A trial trains in a process of its own (search/forked.py), which saves its best epoch's model to
a scratch file. The loop's process, which tells Optuna how the trial ended, keeps the model
before it tells: Optuna records an artifact only with a trial still running, and a failure here
cannot lose the trial, whose result is already in hand. Only a trial among the study's best K is
uploaded; an upload that fails (a full disk, an unwritable folder) is recorded on the trial
(`TrialRecord.model_not_kept`), which completes all the same. After each trial the loop forgets
the models of the trials that fell out of the best K.

Why two workers never delete each other's best models: a trial outside the best K of some complete
trials is outside the best K of any larger set of them, and the complete trials only grow. A worker
reads which trials have models before it reads the values it ranks, so every finished trial it
judges is among those values; running trials it leaves alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import optuna
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.study import StudyDirection
from optuna.trial import TrialState

from search.artifacts import Keeping, ModelStore, copy_artifact, forget_artifacts
from search.errors import UserError
from search.forked import scratch_folder
from search.optuna_internals import TrialArtifact, complete_values, trial_artifacts
from search.record import TrialRecord

MODEL_SUFFIX = ".keras"  # a trial's artifact with this ending is its model (others may hold other files)


class KeptModels:
    """Keeps the models of a study's best `keep` complete trials in `store` (module docstring)."""

    def __init__(self, store: ModelStore, keep: int) -> None:
        self.store, self.keep = store, keep
        self.scratch = scratch_folder(self, "search-models-")

    @classmethod
    def of(cls, keeping: Keeping) -> KeptModels | None:
        """The keeper a study's settled `keeping` asks for; None where it has no store."""
        return cls(keeping.store, keeping.keep) if keeping.store is not None else None

    def scratch_path(self, number: int) -> Path | None:
        """Where trial `number`'s process saves its model for the loop to keep; None when no model is kept."""
        return self.scratch / f"trial_{number}{MODEL_SUFFIX}" if self.keep else None

    def trial_ended(
        self, study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | list[float] | None
    ) -> None:
        """Before the trial is told: upload its model if it completed among the best; the scratch file goes.

        In a study of several objectives (`value` a list) the best are those of the validation metric, its first.
        """
        if isinstance(value, list):
            value = value[0]
        path = self.scratch_path(trial.number)
        if path is None or not path.exists():
            return
        try:
            if state == TrialState.COMPLETE and trial.number in best_numbers(study, self.keep, (trial.number, value)):
                upload_artifact(artifact_store=self.store.open(), file_path=str(path), study_or_trial=trial)
        except Exception as error:  # whatever the store (or the ranking) raised, the trial completes; the attr says why
            why = TrialRecord(model_not_kept=f"keeping it in {self.store.where} failed: {error}")
            # Unless another worker failed the trial as stale meanwhile: then nothing more is written to it,
            # and telling it will say so.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                for key, attr in why.to_attrs().items():
                    trial.set_user_attr(key, attr)
        finally:
            path.unlink(missing_ok=True)

    def prune(self, study: optuna.Study) -> None:
        """Forget the models of finished trials outside the best `keep`: the record first, then the file."""
        models = kept_models(study)
        if not models:
            return
        best = best_numbers(study, self.keep)
        outside = [
            model
            for model in models
            if model.state.is_finished() and not (model.state == TrialState.COMPLETE and model.number in best)
        ]
        forget_artifacts(study, outside, self.store.open)


def best_numbers(study: optuna.Study, keep: int, ending: tuple[int, float | None] | None = None) -> set[int]:
    """The numbers of the study's best `keep` complete trials (ties: the earlier), with `ending` (number, value)
    counted as complete too."""
    values = complete_values(study)
    if ending is not None and ending[1] is not None:
        values.append(ending)
    sign = 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0  # the validation metric's
    return {number for number, _ in sorted(values, key=lambda nv: (-sign * nv[1], nv[0]))[:keep]}


def kept_models(study: optuna.Study) -> list[TrialArtifact]:
    """The models the study's trials keep, by trial number (a running trial's included)."""
    return [a for a in trial_artifacts(study) if a.filename.endswith(MODEL_SUFFIX)]


def stored_model(study: optuna.Study, number: int) -> TrialArtifact | None:
    """Trial `number`'s kept model, or None."""
    return next((a for a in kept_models(study) if a.number == number), None)


def write_model(store: ModelStore, artifact_id: str, path: Path, *, fix: str) -> None:
    """Copy a kept model out of the store to `path`, or raise a UserError saying what is missing and `fix`."""
    try:
        copy_artifact(store.open(), artifact_id, path)
    except ArtifactNotFound:
        raise UserError(
            f"model {artifact_id} is no longer in {store.where} (fell out of the best, or cleaned); {fix}"
        ) from None
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror or error}); {fix}") from None
