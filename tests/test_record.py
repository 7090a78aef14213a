"""The trial's plan, record and fail reason: to user attrs and back, and the attrs older versions wrote."""

from __future__ import annotations

import pytest

from search.record import ROW_KEYS, FailReason, TrialPlan, TrialRecord


def test_a_plan_goes_to_attrs_and_back_with_only_what_differs_from_the_default():
    plan = TrialPlan(epochs=3, initial_epoch=1, initial_weights="w.h5", kt_trial_id="0001")
    assert plan.to_attrs() == {"epochs": 3, "initial_epoch": 1, "initial_weights": "w.h5", "kt_trial_id": "0001"}
    assert TrialPlan.from_attrs(plan.to_attrs()) == plan
    assert TrialPlan(baseline=True).to_attrs() == {"baseline": True}


def test_a_record_goes_to_attrs_and_back():
    record = TrialRecord(
        config={"epochs": 2},
        epochs_run=2,
        seconds=1.25,
        history={"val_accuracy": [0.5, 0.6]},
        worker="h:1",
        fail=FailReason.DIVERGED,
        fail_message="loss became NaN at epoch 2",
    )
    attrs = record.to_attrs()
    assert attrs["fail_reason"] == "loss became NaN at epoch 2" and attrs["fail_kind"] == "diverged"
    assert TrialRecord.from_attrs(attrs) == record
    assert "plan" not in attrs and "fail" not in attrs


def test_a_record_reads_the_plan_it_was_queued_with():
    attrs = {**TrialPlan(baseline=True).to_attrs(), **TrialRecord(epochs_run=1).to_attrs()}
    record = TrialRecord.from_attrs(attrs)
    assert record.baseline and record.epochs_run == 1 and record.fail is None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("surplus: other workers already cover the requested trials", FailReason.SURPLUS),
        ("loss became NaN at epoch 3", FailReason.DIVERGED),
        ("its process was killed by SIGKILL", FailReason.KILLED),
        ("something else", FailReason.OTHER),
    ],
)
def test_the_reasons_older_versions_wrote_without_a_kind_are_told_apart(message, reason):
    assert FailReason.from_attrs({"fail_reason": message}) == reason
    assert TrialRecord.from_attrs({"fail_reason": message}).fail_message == message


def test_no_reason_is_none_and_an_unknown_attr_is_ignored():
    assert FailReason.from_attrs({}) is None
    assert TrialRecord.from_attrs({"some_future_attr": 1}) == TrialRecord()


def test_a_leaderboard_row_reads_neither_the_history_nor_the_versions():
    assert {"config", "seconds", "epochs_run", "param_count", "baseline"} <= set(ROW_KEYS)
    assert not {"history", "versions"} & set(ROW_KEYS)
