"""Whole studies read in plain queries, for optuna-dashboard: Optuna's trial tables read directly."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
from collections.abc import Container, Iterator
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState


class BulkReadStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, with `get_all_trials` read in plain queries instead of ORM objects, and kept.

    optuna-dashboard reads a study through `get_all_trials`, every 10 s while a page is open;
    Optuna builds an ORM object for every trial, param, value and attr first, 29 s of CPU for a
    10,000-trial study (BENCHMARKS.md, "Storage under load"). The same rows read as plain tuples
    and assembled here give the same `FrozenTrial`s (tests/test_optuna_internals.py compares
    them) in a fraction of that. A finished trial does not change (Optuna refuses to), so each
    study's leading run of finished trials is kept and only the trials after it are read again;
    all trials' system attrs are read afresh, as this product forgets a finished trial's kept
    model there (search/artifacts.py). One read at a time: a read that comes while another runs
    waits for it, then reads only what that one did not keep.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settled: dict[int, list[FrozenTrial]] = {}  # per study: its finished trials before any unfinished one
        self._reading = threading.Lock()

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if states is not None or self.get_study_name_from_id(study_id) is None:  # the name check raises KeyError
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        with self._reading:
            settled = self._settled.get(study_id, [])
            with self.engine.connect() as connection:
                fresh = _trials_after(connection, study_id, settled[-1]._trial_id if settled else -1)
                system_attrs = _system_attrs(connection, study_id)
            for trial in (*settled, *fresh):
                trial.system_attrs = system_attrs.get(trial._trial_id, {})
            finished = list(itertools.takewhile(lambda trial: trial.state.is_finished(), fresh))
            self._settled[study_id] = settled + finished
            return settled + fresh


def _trials_after(connection: sqlalchemy.engine.Connection, study_id: int, after: int) -> list[FrozenTrial]:
    """The study's trials whose id is above `after` (their system attrs left empty)."""
    from optuna.storages._rdb import models

    def rows(model: Any, *columns: str, order: str) -> Iterator[Any]:
        return _rows(connection, study_id, after, model, *columns, order=order)

    trials: dict[int, dict[str, Any]] = {}
    table = models.TrialModel.__table__
    query = sqlalchemy.select(
        table.c.trial_id, table.c.number, table.c.state, table.c.datetime_start, table.c.datetime_complete
    ).where(table.c.study_id == study_id, table.c.trial_id > after)
    for trial_id, number, state, start, complete in connection.execute(query.order_by(table.c.trial_id)):
        trials[trial_id] = {
            "number": number,
            "state": state,
            "datetime_start": _local(start),
            "datetime_complete": _local(complete),
            "params": {},
            "distributions": {},
            "user_attrs": {},
            "system_attrs": {},
            "intermediate_values": {},
            "values": None,
            "value": None,
            "trial_id": trial_id,
        }
    known: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial_id, name, value, distribution_json in rows(
        models.TrialParamModel, "trial_id", "param_name", "param_value", "distribution_json", order="param_id"
    ):
        if distribution_json not in known:
            known[distribution_json] = optuna.distributions.json_to_distribution(distribution_json)
        distribution = known[distribution_json]
        trials[trial_id]["params"][name] = distribution.to_external_repr(value)
        trials[trial_id]["distributions"][name] = distribution
    values: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, value_type in rows(
        models.TrialValueModel, "trial_id", "objective", "value", "value_type", order="trial_value_id"
    ):
        values.setdefault(trial_id, {})[objective] = models.TrialValueModel.stored_repr_to_value(value, value_type)
    for trial_id, by_objective in values.items():
        trials[trial_id]["values"] = [by_objective[k] for k in sorted(by_objective)]
    for trial_id, step, value, value_type in rows(
        models.TrialIntermediateValueModel,
        "trial_id",
        "step",
        "intermediate_value",
        "intermediate_value_type",
        order="trial_intermediate_value_id",
    ):
        convert = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        trials[trial_id]["intermediate_values"][step] = convert(value, value_type)
    for trial_id, key, value_json in rows(
        models.TrialUserAttributeModel, "trial_id", "key", "value_json", order="trial_user_attribute_id"
    ):
        trials[trial_id]["user_attrs"][key] = json.loads(value_json)
    return [FrozenTrial(**fields) for fields in trials.values()]


def _system_attrs(connection: sqlalchemy.engine.Connection, study_id: int) -> dict[int, dict[str, Any]]:
    """The system attrs of the study's trials, by trial id."""
    from optuna.storages._rdb import models

    found: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in _rows(
        connection,
        study_id,
        -1,
        models.TrialSystemAttributeModel,
        "trial_id",
        "key",
        "value_json",
        order="trial_system_attribute_id",
    ):
        found.setdefault(trial_id, {})[key] = json.loads(value_json)
    return found


def _rows(
    connection: sqlalchemy.engine.Connection, study_id: int, after: int, model: Any, *columns: str, order: str
) -> list[Any]:
    """`columns` of `model`'s rows that belong to the study's trials whose id is above `after`, by `order`."""
    from optuna.storages._rdb import models

    trials, table = models.TrialModel.__table__, model.__table__
    trial_ids = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id, trials.c.trial_id > after)
    query = sqlalchemy.select(*(table.c[c] for c in columns)).where(table.c.trial_id.in_(trial_ids))
    return connection.execute(query.order_by(table.c[order])).all()


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC time as the naive local time Optuna's FrozenTrials hold."""
    return None if utc is None else utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)
