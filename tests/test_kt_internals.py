"""Keras Tuner's private API as search/backends/_kt_internals.py uses it; fails loudly if a version moves it."""

from __future__ import annotations

import json

from search.backends import _kt_internals as kt_internals
from search.backends._keras_tuner import _keras_tuner


def _hyperband(tmp_path):
    kt = _keras_tuner()
    hp = kt.HyperParameters()
    hp.Int("units", 1, 8)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), hyperparameters=hp, max_epochs=9, factor=3, seed=1
    )
    kt_internals.place(oracle, tmp_path / "kt" / "s")
    return kt, oracle


def test_an_oracle_is_placed_in_the_folder_and_reloads_with_its_open_trials_queued(tmp_path):
    kt, oracle = _hyperband(tmp_path)
    trial = oracle.create_trial("tuner0")
    assert trial.status == kt.engine.trial.TrialStatus.RUNNING
    oracle.save()
    assert (tmp_path / "kt" / "s" / "oracle.json").exists()
    assert kt_internals.retry_queue(oracle) == []
    _, reloaded = _hyperband(tmp_path)
    reloaded.reload()
    assert kt_internals.retry_queue(reloaded) == [trial.trial_id]


def test_hyperband_brackets_and_round_sizes_read_as_used(tmp_path):
    _, oracle = _hyperband(tmp_path)
    trial = oracle.create_trial("tuner0")
    (bracket,) = kt_internals.brackets(oracle)
    first_round = bracket["rounds"][0]
    assert {info["id"] for info in first_round} == {trial.trial_id}
    assert "past_id" in first_round[0]
    sizes = [kt_internals.round_size(oracle, bracket["bracket_num"], r) for r in range(len(bracket["rounds"]))]
    assert all(isinstance(size, int) and size >= 1 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)  # each round keeps the best of the one before


def test_a_state_laid_out_in_a_folder_reloads_as_the_oracle_saved_it(tmp_path):
    _, oracle = _hyperband(tmp_path)
    trial = oracle.create_trial("tuner0")  # the oracle saves its files as it goes
    saved = kt_internals.read_folder(tmp_path / "kt" / "s")
    oracle_state, trials = saved
    assert trials == {trial.trial_id: json.loads(json.dumps(trial.get_state()))}
    assert oracle_state["start_order"] == [trial.trial_id]
    assert oracle_state["ongoing_trials"] == {"tuner0": trial.trial_id}
    kt_internals.write_folder(tmp_path / "elsewhere" / "s", *saved)
    _, reloaded = _hyperband(tmp_path)
    kt_internals.place(reloaded, tmp_path / "elsewhere" / "s")
    reloaded.reload()
    assert list(reloaded.trials) == [trial.trial_id] and kt_internals.retry_queue(reloaded) == [trial.trial_id]
    assert kt_internals.read_folder(tmp_path / "nothing") is None
