"""The study driver: a study's identity and settings, and running or joining a study (trials: search/trials.py)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from search.artifacts import Keeping, settle_keeping
from search.backends import MULTI_OBJECTIVE_BACKENDS, MULTI_OBJECTIVE_PRUNERS, PRUNERS, Backend, Proposal, get_backend
from search.data import Dataset, load_dataset
from search.errors import UserError
from search.kept import KeptModels
from search.process import signals_interrupt
from search.progress import Progress, format_seconds
from search.record import FailReason, TrialPlan, TrialRecord
from search.spec import IDENTITY, IMPLIED, StudySpec, identity
from search.storage import HEARTBEAT_SECONDS, open_storage
from search.trials import counts, enqueue, run_trials
from search.workers import run_workers
from spaces import SPACES, augmentation, get_space, params_for, prior


def open_study(storage: optuna.storages.BaseStorage, name: str, spec: StudySpec, backend: Backend) -> optuna.Study:
    """Create the study, or load it after checking it was made with the same settings."""
    # A single-objective study is made as it always was (`direction`), so older versions read it alike.
    directions = {"directions": spec.directions} if spec.multi_objective else {"direction": spec.direction}
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        **directions,
        sampler=backend.make_sampler(0),
        pruner=backend.pruner,
        load_if_exists=True,
    )
    recorded = study.user_attrs
    if not recorded:
        for key, value in {**spec.attrs(), **backend.describe()}.items():
            study.set_user_attr(key, value)
        if spec.multi_objective:  # the names optuna-dashboard and Optuna's plots put on the front's axes
            with warnings.catch_warnings():  # experimental since Optuna 3.2, and how they learn them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(spec.objectives))
        if spec.baseline:  # the reference model whatever the space: no draw of it, so no params
            enqueue(study, Proposal({}, TrialPlan(baseline=True)))
        if spec.prior and (known := prior(spec.space, spec.base(), spec.dataset)) is not None:
            enqueue(study, Proposal(params_for(spec.space, known), TrialPlan(prior=True)))
        return study
    for key, value in identity(recorded).items():
        if value != getattr(spec, key):
            raise UserError(
                f"study '{name}' was made with {key}={value!r}, not {getattr(spec, key)!r}; "
                f"run it with {key}={value!r} or pick another --study name"
            )
    return study


def load_spec(storage: optuna.storages.BaseStorage, name: str) -> StudySpec:
    """The settings of an existing study (for workers that join it), or a UserError."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = optuna.get_all_study_names(storage)
        raise UserError(f"no study named '{name}' in the storage; known: {', '.join(known) or 'none'}") from None
    if not set(IDENTITY) - set(IMPLIED) <= set(study.user_attrs):
        raise UserError(f"study '{name}' was not made by `search run`; it has no space/backend settings")
    return StudySpec.from_attrs(study.user_attrs)


@dataclass(frozen=True)
class Search:
    """A study opened for searching: the Optuna study, the backend choosing its trials, its spec, its models."""

    study: optuna.Study
    backend: Backend
    spec: StudySpec
    keeping: Keeping


def open_search(
    spec: StudySpec,
    storage: str,
    name: str,
    *,
    seed: int,
    heartbeat: int = HEARTBEAT_SECONDS,
    workers: int = 1,
    keep_models: int | None = None,
    artifacts: str | None = None,
) -> Search:
    """The one wiring of a search (run, worker, benchmarks): check the spec, open the storage, make
    the backend with `seed`, create the study or check it was made with the same settings, settle
    which models it keeps where (`keep_models`, `artifacts`: None for the study's own or the defaults)."""
    opened_storage = open_storage(storage, heartbeat=heartbeat)
    if spec.pruner is None:  # not given: a study resumes with its own, a new one gets the default
        spec = replace(spec, pruner=_recorded(opened_storage, name).get("pruner", spec.default_pruner))
    _check(spec)
    backend = get_backend(spec.backend)(
        seed=seed, pruner=spec.pruner, epochs=spec.epochs, spec=spec, storage=storage, study=name, workers=workers
    )
    study = open_study(opened_storage, name, spec, backend)
    return Search(study, backend, spec, settle_keeping(storage, study, keep=keep_models, root=artifacts))


def run_study(
    spec: StudySpec,
    *,
    study: str,
    storage: str,
    n_trials: int,
    timeout: float | None,
    workers: int = 1,
    heartbeat: int = HEARTBEAT_SECONDS,
    keep_models: int | None = None,
    artifacts: str | None = None,
) -> int:
    """Create or resume `study` and run it until it holds `n_trials` finished trials (or time is up).

    With `workers` > 1 the trials run in that many `search worker` processes on this machine.
    `keep_models` and `artifacts`: see `open_search`.
    """
    data = _load(spec)
    spec = replace(spec, dataset=data.name)  # the name it goes by, whichever spelling or folder it came from
    # Each trial's sampler is seeded from this and the study's trial count (Backend.make_sampler):
    # a resumed study draws new values, as an uninterrupted one would.
    search = open_search(
        spec,
        storage,
        study,
        seed=spec.seed,
        heartbeat=heartbeat,
        workers=workers,
        keep_models=keep_models,
        artifacts=artifacts,
    )
    opened, backend, spec = search.study, search.backend, search.spec
    opened.set_user_attr("trials", n_trials)  # what workers joining later aim for
    opened.set_user_attr("heartbeat", heartbeat)  # ... and how often they show they are alive
    if workers > 1:
        status = run_workers(study=study, storage=storage, n_trials=n_trials, timeout=timeout, workers=workers)
        _summary(opened, Progress(n_trials, spec.metric))
        return status
    return _work(opened, backend, spec, n_trials, timeout, data, search.keeping)


def join_study(*, study: str, storage: str, n_trials: int | None, timeout: float | None) -> int:
    """Join an existing study as one more worker, with the settings it was created with."""
    found = open_storage(storage)
    spec = load_spec(found, study)
    # All workers judge staleness by the study's heartbeat: one with a shorter grace period than
    # the others would fail their live trials.
    heartbeat = _heartbeat(found, study)
    found.engine.dispose()  # read once; a worker holds no idle connection it will not use
    data = _load(spec)
    # Each worker samples with its own seed, or workers started together would pick the same params.
    search = open_search(spec, storage, study, seed=spec.seed + 1 + os.getpid(), heartbeat=heartbeat)
    n_trials = n_trials or search.study.user_attrs.get("trials", 1)
    return _work(search.study, search.backend, spec, n_trials, timeout, data, search.keeping)


def _recorded(storage: optuna.storages.BaseStorage, name: str) -> dict:
    """The settings study `name` records; none for a study not made yet."""
    try:
        return storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return {}


def _heartbeat(storage: optuna.storages.BaseStorage, name: str) -> int:
    """The heartbeat interval the study's `search run` set (studies from before it: the default)."""
    return _recorded(storage, name).get("heartbeat", HEARTBEAT_SECONDS)


def _check(spec: StudySpec) -> None:
    get_space(spec.space)
    get_backend(spec.backend)
    if spec.pruner not in PRUNERS:
        raise UserError(f"unknown pruner '{spec.pruner}'; known pruners: {', '.join(PRUNERS)}")
    if not spec.multi_objective:
        return
    if spec.backend not in MULTI_OBJECTIVE_BACKENDS:
        raise UserError(
            f"--backend {spec.backend} cannot search several objectives ({spec.objective}); "
            f"backends that can: {', '.join(MULTI_OBJECTIVE_BACKENDS)}"
        )
    if spec.pruner not in MULTI_OBJECTIVE_PRUNERS:
        raise UserError(
            f"--pruner {spec.pruner} judges the values Optuna's trial.report takes, which a study of several "
            f"objectives ({spec.objective}) cannot; pick {' or '.join(MULTI_OBJECTIVE_PRUNERS)}"
        )


def _load(spec: StudySpec) -> Dataset:
    """The study's data, verified; refused, before any study is made, where its space would augment features."""
    data = load_dataset(spec.dataset)
    augmenting = augmentation(spec.space, spec.base())
    if augmenting and not data.images:
        plain = [name for name in SPACES if not augmentation(name, spec.base())]
        raise UserError(
            f"space '{spec.space}' samples augmentation ({', '.join(augmenting)}), which moves pixels, but "
            f"{data.name} holds features, not images; pick a space without it: {', '.join(plain)}"
        )
    return data


def _same_data(study: optuna.Study, data: Dataset) -> None:
    """Refuses to add trials on other contents than the study's trials recorded (an .npz file rewritten since)."""
    records = (TrialRecord.from_attrs(trial.user_attrs) for trial in study.get_trials(deepcopy=False))
    recorded = next((record.dataset for record in records if record.dataset), data.checksum)
    if recorded != data.checksum:
        raise UserError(
            f"study '{study.study_name}' trained on dataset {recorded}, but {data.name} now holds {data.checksum}; "
            "restore the data it trained on or pick another --study name"
        )


def _work(
    study: optuna.Study,
    backend: Backend,
    spec: StudySpec,
    n_trials: int,
    timeout: float | None,
    data: Dataset,
    keeping: Keeping,
) -> int:
    _same_data(study, data)
    progress = Progress(n_trials, spec.metric, timeout=timeout)
    now = counts(study)
    budget = f"no new trial after {format_seconds(timeout)}" if timeout else "no time limit"
    progress.note(
        f"study '{study.study_name}' on {data.name}: space {spec.space}, backend {spec.backend}, pruner {spec.pruner}, "
        f"{spec.objective}, up to {spec.epochs} epochs; {now['complete'] + now['pruned']} of {n_trials} trials "
        f"done; budget: {n_trials} trials, {budget}"
    )
    if keeping.line:
        progress.note(keeping.line)
    # Imported here, not at the top: it brings TensorFlow (seconds, and memory), which `search run
    # --workers N` itself, only starting and watching its workers, never needs.
    from search.objective import Objective

    try:
        with signals_interrupt():
            run_trials(study, backend, Objective(spec, data, progress, KeptModels.of(keeping)), n_trials, timeout)
    except KeyboardInterrupt:
        progress.note(f"interrupted: finished trials are kept; resume with: {spec.command}")
        return 130
    except sqlalchemy.exc.OperationalError as error:
        raise UserError(
            f"the storage failed mid-search ({str(error.orig).splitlines()[0]}); finished trials are kept; "
            f"resume with: {spec.command}"
        ) from None
    _summary(study, progress)
    return 0


def _summary(study: optuna.Study, progress: Progress) -> None:
    now = counts(study)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    surplus = sum(FailReason.from_attrs(t.user_attrs) == FailReason.SURPLUS for t in failed)
    progress.note(
        f"done: {now['complete']} complete, {now['pruned']} pruned, {now['fail'] - surplus} failed trials in "
        f"'{study.study_name}'" + (f" ({surplus} more left untrained: other workers covered them)" if surplus else "")
    )
    if now["complete"] and len(study.directions) > 1:
        progress.note(
            f"front: {len(study.best_trials)} Pareto-optimal trials; list them with: search rank --study "
            f"{study.study_name} --pareto; export one within a budget with: search export --study "
            f"{study.study_name} --max-params N"
        )
    elif now["complete"]:
        best = study.best_trial
        progress.note(
            f"best: trial {best.number}, {progress.objective} {best.value:.4f}; "
            f"export it with: make export STUDY={study.study_name} OUT=best.yaml"
        )
