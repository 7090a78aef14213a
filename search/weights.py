"""Continuation weights: what a trial leaves for the trial that trains on from it.

asha pauses trials at its rungs and Keras Tuner's Hyperband ends them at its rounds; a promoted
trial trains on from the weights of the trial it continues (`TrialPlan.continues`). Those weights
are an Optuna artifact of that trial (`trial_N.weights.h5`), in the study's model store
(search/artifacts.py) where it has one, so a worker on another machine that reaches the store
continues from them too. Where it has none (PostgreSQL without `--artifacts`, a study older than
the store), they go to `.paused/<study>/` beside the storage, for this machine only: a
continuation elsewhere trains from scratch, to the same epoch (slower, the same result).

The trial's process saves them to a scratch file; the loop's process uploads them before it tells
the trial (Optuna records an artifact only with a running trial), and the scratch file goes. A
continuation reads a scratch copy. What no trial will read again is forgotten as kept models are:
the record first, then the file, so a crash between the two leaves a file that `search
clean-artifacts` removes, never a record without its file.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from search.artifacts import copy_artifact, forget_artifacts, recorded_store
from search.forked import scratch_folder
from search.optuna_internals import TrialArtifact, stored_trial, trial_artifacts
from search.record import TrialPlan, TrialRecord
from search.storage import study_folder

WEIGHTS_SUFFIX = ".weights.h5"
LOCAL_FOLDER = ".paused"  # beside a SQLite file, else the folder the worker started in


def held_weights(study: optuna.Study) -> list[TrialArtifact]:
    """The continuation weights the study's trials hold, by trial number."""
    return [a for a in trial_artifacts(study) if a.filename.endswith(WEIGHTS_SUFFIX)]


class ContinuationWeights:
    """The continuation weights of the study named `study` in storage `url` (module docstring)."""

    def __init__(self, url: str, study: str) -> None:
        self.local = study_folder(url, study, LOCAL_FOLDER)
        self.scratch = scratch_folder(self, "search-weights-")

    def start(self, study: optuna.Study, trial: optuna.Trial, plan: TrialPlan) -> None:
        """Before trial `trial` runs with `plan`: the weights it continues from, and a file for those it leaves.

        The plan goes to the trial's user attrs with `initial_weights` and `initial_epoch` from the
        trial it continues (none: from scratch, where they are gone) and `save_weights` if it keeps
        any; always set, as a retried trial comes with its first try's, from another process.
        """
        plan = replace(plan, initial_epoch=0, initial_weights=None, save_weights=None)
        if plan.continues is not None:
            source = stored_trial(study, plan.continues)
            found = self._fetch(study, source)
            if found is not None:
                start = TrialPlan.from_attrs(source.user_attrs).epochs or 0
                plan = replace(plan, initial_weights=str(found), initial_epoch=start)
        if plan.keep_weights:
            plan = replace(plan, save_weights=str(self._scratch_path(trial.number)))
        for key, value in {**plan.to_attrs(), **plan.started_attrs()}.items():
            trial.set_user_attr(key, value)

    def keep(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """After the trial's process ended, before it is told: upload the weights it saved (if any)."""
        path = self._scratch_path(trial.number)
        if not path.exists():
            return
        try:
            upload_artifact(artifact_store=self._store(study), file_path=str(path), study_or_trial=trial)
        except Exception as error:
            # A full disk, an unreachable store: the trial loses nothing (a continuation trains from
            # scratch) and says why, unless another worker failed it as stale meanwhile.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                for key, value in TrialRecord(weights_not_kept=f"{type(error).__name__}: {error}").to_attrs().items():
                    trial.set_user_attr(key, value)
        finally:
            path.unlink(missing_ok=True)

    def forget(self, study: optuna.Study, needed: set[int]) -> None:
        """Forget the weights of the finished trials not in `needed` (running trials' are left alone)."""
        unneeded = [held for held in held_weights(study) if held.number not in needed and held.state.is_finished()]
        forget_artifacts(study, unneeded, lambda: self._store(study))

    def _fetch(self, study: optuna.Study, source: optuna.trial.FrozenTrial) -> Path | None:
        """A scratch copy of trial `source`'s weights, or None where none are found."""
        held = next((a for a in held_weights(study) if a.number == source.number), None)
        if held is None:
            # A trial paused by a version that kept its weights as a plain file, named in its plan.
            legacy = TrialPlan.from_attrs(source.user_attrs).save_weights
            return Path(legacy) if legacy and Path(legacy).is_file() else None
        path = self.scratch / f"from_{source.number}{WEIGHTS_SUFFIX}"
        try:
            copy_artifact(self._store(study), held.artifact_id, path)
        except (ArtifactNotFound, OSError):
            return None
        return path

    def _scratch_path(self, number: int) -> Path:
        return self.scratch / f"trial_{number}{WEIGHTS_SUFFIX}"

    def _store(self, study: optuna.Study) -> optuna.artifacts.FileSystemArtifactStore | object:
        """The study's model store, or the folder beside the storage where it has none."""
        store = recorded_store(study.user_attrs, study.study_name)
        if store is not None:
            return store.open()
        self.local.mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(self.local)
