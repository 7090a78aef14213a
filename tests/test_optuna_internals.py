"""Optuna's private API and tables as search/optuna_internals/ uses them; fails loudly if an upgrade moves them."""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import json
import math
import time
from dataclasses import replace

import numpy as np
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search import optuna_internals
from search.backends._optuna import TPE_SETTINGS
from search.storage import open_storage

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(tmp_path) -> optuna.Study:
    study = optuna.create_study(study_name="i", storage=open_storage(f"sqlite:///{tmp_path / 'i.db'}"))
    x = optuna.distributions.FloatDistribution(0, 1)
    for number, (state, value) in enumerate(
        [
            (TrialState.COMPLETE, 0.5),
            (TrialState.PRUNED, None),
            (TrialState.COMPLETE, math.inf),
            (TrialState.FAIL, None),
        ]
    ):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params={"x": 0.1},
                distributions={"x": x},
                user_attrs={"seconds": 1.5 * number, "config": {"n": number}, "history": [1.0]},
            )
        )
    study.ask()
    return study


def test_the_optuna_installed_is_the_major_version_whose_internals_are_used():
    major = int(optuna.__version__.split(".")[0])
    assert major == optuna_internals.TESTED_MAJOR, (
        f"Optuna {optuna.__version__} is installed, search/optuna_internals/ is written for "
        f"{optuna_internals.TESTED_MAJOR}.x: check each function there against it, then the pin in pyproject.toml"
    )


def test_a_trial_read_alone_is_the_one_optuna_reads(tmp_path):
    study = _study(tmp_path)
    for trial in study.get_trials(deepcopy=False):
        alone = optuna_internals.stored_trial(study, trial.number)
        assert (alone.number, alone.state, alone.value, alone.user_attrs) == (
            trial.number,
            trial.state,
            trial.value,
            trial.user_attrs,
        )


def test_the_engine_is_the_storage_one(tmp_path):
    study = _study(tmp_path)
    engine = optuna_internals.engine_of(study)
    assert isinstance(engine, sqlalchemy.engine.Engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 5


def test_a_study_s_system_attrs_hold_state_as_json(tmp_path):
    study = _study(tmp_path)
    optuna_internals.set_study_system_attr(study, "kt:oracle", {"end_order": ["0000"], "score": 0.5})
    again = optuna.load_study(study_name="i", storage=f"sqlite:///{tmp_path / 'i.db'}")
    assert optuna_internals.study_system_attrs(again)["kt:oracle"] == {"end_order": ["0000"], "score": 0.5}


def test_a_stored_trial_takes_an_attr_through_its_live_handle(tmp_path):
    study = _study(tmp_path)
    running = study.get_trials(deepcopy=False)[-1]
    optuna_internals.live_trial(study, running).set_user_attr("fail_reason", "its process was killed by SIGKILL")
    assert optuna_internals.stored_trial(study, running.number).user_attrs["fail_reason"].startswith("its process")


def test_the_queries_on_optunas_tables_read_what_its_api_reads(tmp_path):
    study = _study(tmp_path)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    read = list(optuna_internals.complete_attrs(study, ["seconds", "config"]))
    assert read == [
        (t.number, t.value, {"seconds": t.user_attrs["seconds"], "config": t.user_attrs["config"]}) for t in complete
    ]
    assert optuna_internals.complete_values(study) == [(t.number, t.value) for t in complete]
    some = [complete[-1].number, complete[0].number, 10_000]  # any order; a number no trial has is no row
    assert [number for number, _, _ in optuna_internals.complete_attrs(study, ["seconds"], some)] == sorted(some[:2])
    states = collections.Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    assert optuna_internals.state_counts(study) == {s.name.lower(): states.get(s.name.lower(), 0) for s in TrialState}


def test_a_trial_s_heartbeat_is_written_while_the_block_runs(tmp_path):
    study = _study(tmp_path)
    trial = study.ask()
    beats = sqlalchemy.text("SELECT count(*) FROM trial_heartbeats WHERE trial_id = :trial")

    def beaten() -> int:
        # A connection per look: SQLite transactions here take the write lock, and the heartbeat needs it.
        with optuna_internals.engine_of(study).connect() as connection:
            return connection.execute(beats, {"trial": trial._trial_id}).scalar()

    with optuna_internals.heartbeat(study, trial):
        deadline = time.monotonic() + 60
        while not beaten():
            assert time.monotonic() < deadline, "no heartbeat written"
            time.sleep(0.1)


def test_a_running_trial_that_never_had_a_heartbeat_is_failed_after_the_grace_and_queued_again(tmp_path):
    # A worker killed between `ask` and its first heartbeat: Optuna's own sweep never fails its trial.
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=1)  # grace: 3 s
    study = optuna.create_study(study_name="h", storage=storage)
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive = study.ask()
    optuna_internals.first_heartbeat(study, alive)
    optuna.storages.fail_stale_trials(study)
    optuna_internals.fail_heartbeatless(study)  # at once: younger than the grace, so not judged yet
    assert len(study.get_trials(states=(TrialState.RUNNING,), deepcopy=False)) == 2
    deadline = time.monotonic() + 120
    while optuna_internals.stored_trial(study, orphan.number).state == TrialState.RUNNING:
        assert time.monotonic() < deadline, "the heartbeatless trial was never failed"
        time.sleep(0.5)
        optuna_internals.fail_heartbeatless(study)
    retries = study.get_trials(states=(TrialState.WAITING,), deepcopy=False)
    assert [(t.params, t.system_attrs["failed_trial"]) for t in retries] == [(orphan.params, orphan.number)]
    # The trial with a heartbeat is Optuna's to judge (its heartbeat goes stale the same way), not this sweep's.
    assert optuna_internals.stored_trial(study, alive.number).state == TrialState.RUNNING


def test_bulk_reads_give_the_trials_optunas_orm_gives(tmp_path):
    study = _study(tmp_path)
    # Every kind of row: categorical and int params, intermediate values (one infinite), system attrs.
    trial = study.ask(
        {
            "units": optuna.distributions.CategoricalDistribution([8, 16]),
            "n": optuna.distributions.IntDistribution(1, 4),
        }
    )
    trial.report(0.25, step=1)
    trial.report(-math.inf, step=2)
    study._storage.set_trial_system_attr(trial._trial_id, "fixed_params", {"units": 16})
    study.tell(trial, 0.75)
    url = f"sqlite:///{tmp_path / 'i.db'}"
    bulk = open_storage(url, bulk_reads=True)
    assert isinstance(bulk, optuna_internals.BulkReadStorage)
    study_id = bulk.get_study_id_from_name("i")
    expected = open_storage(url).get_all_trials(study_id, deepcopy=False)
    assert bulk.get_all_trials(study_id, deepcopy=False) == expected
    assert [t.number for t in expected] == list(range(6))
    with pytest.raises(KeyError):
        bulk.get_all_trials(study_id + 1)


def test_bulk_reads_read_again_only_what_can_change(tmp_path):
    """Finished trials are kept (a later read sees their rows changed behind Optuna's back only in system attrs,
    where an artifact is forgotten); the running trial and new ones are read again."""
    study = _study(tmp_path)
    url = f"sqlite:///{tmp_path / 'i.db'}"
    bulk, orm = open_storage(url, bulk_reads=True), open_storage(url)
    study_id = bulk.get_study_id_from_name("i")
    (tmp_path / "model.keras").write_bytes(b"model")
    done = study.ask()
    artifact = optuna.artifacts.upload_artifact(
        artifact_store=optuna.artifacts.FileSystemArtifactStore(tmp_path),
        file_path=str(tmp_path / "model.keras"),
        study_or_trial=done,
    )
    study.tell(done, 0.6)
    assert bulk.get_all_trials(study_id, deepcopy=False) == orm.get_all_trials(study_id, deepcopy=False)
    running = study.trials[4]
    with orm.engine.begin() as connection:  # a kept row changed behind Optuna's back: the read must not see it
        connection.execute(sqlalchemy.text("UPDATE trial_values SET value = 0.25 WHERE trial_id = 1"))
    optuna_internals.live_trial(study, running).report(0.5, step=1)
    optuna_internals.forget_trial_artifact(study, done.number, artifact)
    study.tell(study.ask(), 0.9)
    again = bulk.get_all_trials(study_id, deepcopy=False)
    assert again[0].value == 0.5, "the finished trials before the running one are not read again"
    assert again[1:] == orm.get_all_trials(study_id, deepcopy=False)[1:]
    assert again[4].intermediate_values == {1: 0.5} and again[-1].value == 0.9
    assert not any(key.startswith("artifacts:") for key in again[5].system_attrs)


def test_bulk_reads_from_several_threads_at_once_give_optunas_trials(tmp_path):
    """The dashboard serves while its read-ahead reads (search/dashboard.py): one storage, two threads."""
    _study(tmp_path)
    url = f"sqlite:///{tmp_path / 'i.db'}"
    bulk = open_storage(url, bulk_reads=True)
    study_id = bulk.get_study_id_from_name("i")
    expected = open_storage(url).get_all_trials(study_id, deepcopy=False)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        reads = list(pool.map(lambda _: bulk.get_all_trials(study_id, deepcopy=False), range(8)))
    assert all(read == expected for read in reads)


def test_the_artifacts_read_and_forgotten_are_those_optuna_records(tmp_path):
    study = _study(tmp_path)
    store = optuna.artifacts.FileSystemArtifactStore(tmp_path)
    (tmp_path / "trial_5.keras").write_bytes(b"model")
    running = study.ask()
    for name in ("trial_5.keras", "i.db"):
        optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(tmp_path / name), study_or_trial=running)
    recorded = optuna.artifacts.get_all_artifact_meta(running)
    read = optuna_internals.trial_artifacts(study)
    assert sorted((a.artifact_id, a.filename) for a in read) == sorted((m.artifact_id, m.filename) for m in recorded)
    assert {(a.number, a.state) for a in read} == {(running.number, TrialState.RUNNING)}
    # What the dashboard leaves of an artifact deleted there: a JSON null under the same key; no artifact.
    deleted = optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "i.db"), study_or_trial=running
    )
    study._storage.set_trial_system_attr(running._trial_id, f"artifacts:{deleted}", json.dumps(None))
    study.tell(running, 0.7)
    assert [(a.artifact_id, a.state) for a in optuna_internals.trial_artifacts(study)] == [
        (a.artifact_id, TrialState.COMPLETE) for a in read
    ]
    optuna_internals.forget_trial_artifact(study, running.number, read[0].artifact_id)  # finished, as pruning does
    assert optuna_internals.trial_artifacts(study) == [replace(read[1], state=TrialState.COMPLETE)]
    assert f"artifacts:{read[0].artifact_id}" not in study._storage.get_trial_system_attrs(running._trial_id)


@pytest.mark.filterwarnings("ignore:`gamma` has been deprecated:FutureWarning")
def test_tpe_s_good_group_is_the_share_the_product_sets():
    """`gamma`, deprecated in Optuna 4.9, must still set how many trials TPE models as the good ones."""
    sampler = optuna.samplers.TPESampler(**TPE_SETTINGS)
    assert [sampler._gamma(n) for n in (4, 20, 200)] == [1, 5, 25]
    assert "self._gamma(n)" in inspect.getsource(optuna.samplers.TPESampler._sample)


def test_tpe_s_choice_is_lowered_by_the_penalty_on_its_own_candidates():
    """The penalty sees the subspace and TPE's candidates (in their ranges, categories as indices) and
    steers the choice: every proposal after the start-up avoids the penalized half."""
    calls = []

    def penalty(study, space, samples):
        calls.append((set(space), {name: (values.min(), values.max()) for name, values in samples.items()}))
        return np.where(samples["x"] > 0.5, 100.0, 0.0)

    sampler = optuna_internals.PenalizedTPESampler(penalty=penalty, seed=0, n_startup_trials=5, multivariate=True)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        trial.suggest_float("rate", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("width", [16, 64, 256])
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=15)
    assert len(calls) == 10, "the penalty is asked once per proposal"
    names, ranges = calls[-1]
    assert names == {"rate", "width", "x"}
    assert 1e-4 <= ranges["rate"][0] <= ranges["rate"][1] <= 1e-1
    assert {0.0, 1.0, 2.0} >= {ranges["width"][0], ranges["width"][1]}
    assert all(t.params["x"] <= 0.5 for t in study.trials[5:])
