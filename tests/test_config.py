"""Tests for search/config.py: the reference defaults, validation, dict/YAML round trips, the schema."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from search.config import TrialConfig, schema_rows
from search.errors import UserError

FIELDS = [f.name for f in dataclasses.fields(TrialConfig)]

# Every field away from its default, and small floats that YAML must keep as floats.
CUSTOM = TrialConfig(
    hidden_units=(1024, 16),
    activation="gelu",
    input_dropout=0.1,
    dropout=0.3,
    max_norm=3.0,
    batchnorm="before_activation",
    l2=1e-5,
    augment_translate=0.1,
    augment_rotate=10.0,
    augment_zoom=0.05,
    augment_elastic_alpha=34.0,
    augment_elastic_sigma=6.0,
    optimizer="sgd",
    learning_rate=1e-5,
    momentum=0.95,
    weight_decay=0.01,
    lr_schedule="step",
    lr_decay_factor=0.1,
    lr_decay_epochs=3,
    lr_patience=4,
    batch_size=256,
    epochs=7,
    early_stopping_patience=2,
    seed=42,
)


def test_defaults_are_the_reference_model() -> None:
    config = TrialConfig()
    assert config.hidden_units == (512, 512, 256, 256, 128, 128, 8)
    assert config.activation == "relu"
    assert config.optimizer == "adam"
    assert config.learning_rate == 0.001
    assert config.batch_size == 100
    assert config.epochs == 20
    assert config.dropout == 0.0
    assert config.input_dropout == 0.0
    assert config.batchnorm == "none"
    assert config.lr_schedule == "constant"
    assert config.l2 == 0.0
    assert config.max_norm == 0.0
    assert (config.augment_translate, config.augment_rotate, config.augment_zoom) == (0.0, 0.0, 0.0)
    assert config.augment_elastic_alpha == 0.0
    assert config.early_stopping_patience == 0


def test_custom_config_differs_from_default_in_every_field() -> None:
    # Guards the round-trip tests below: they would prove little if CUSTOM kept defaults.
    default = TrialConfig()
    assert [name for name in FIELDS if getattr(CUSTOM, name) == getattr(default, name)] == []


@pytest.mark.parametrize("config", [TrialConfig(), CUSTOM], ids=["default", "custom"])
def test_dict_round_trip(config: TrialConfig) -> None:
    values = config.to_dict()
    assert list(values) == FIELDS
    assert isinstance(values["hidden_units"], list)
    assert TrialConfig.from_dict(values, complete=True) == config


@pytest.mark.parametrize("config", [TrialConfig(), CUSTOM], ids=["default", "custom"])
def test_yaml_round_trip(config: TrialConfig) -> None:
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    loaded = yaml.safe_load(text)
    again = TrialConfig.from_dict(loaded, complete=True)
    assert again == config
    assert isinstance(again.learning_rate, float)
    assert isinstance(again.hidden_units, tuple)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"hidden_layers": [64]}, "hidden_layers"),  # unknown key
        ({"epochs": "20"}, "epochs"),  # string for int
        ({"epochs": True}, "epochs"),  # bool for int
        ({"epochs": 2.5}, "epochs"),  # float for int
        ({"batch_size": 100.0}, "batch_size"),  # a whole float is still not an int
        ({"learning_rate": "0.001"}, "learning_rate"),  # string for float
        ({"learning_rate": False}, "learning_rate"),  # bool for float
        ({"learning_rate": float("nan")}, "learning_rate"),  # not finite
        ({"hidden_units": [64, "32"]}, "hidden_units"),  # string inside the list
        ({"hidden_units": [64.0]}, "hidden_units"),  # float inside the list
        ({"hidden_units": 64}, "hidden_units"),  # not a list
        ({"hidden_units": []}, "hidden_units"),  # empty
        ({"hidden_units": [0]}, "hidden_units"),  # out of range
        ({"dropout": 0.95}, "dropout"),  # out of range, high
        ({"epochs": 0}, "epochs"),  # out of range, low
        ({"learning_rate": 100.0}, "learning_rate"),  # out of range, high
        ({"activation": "sigmoid"}, "activation"),  # bad choice
        ({"batchnorm": "yes"}, "batchnorm"),  # bad choice
        ({"lr_schedule": "linear"}, "lr_schedule"),  # bad choice
        ({"activation": None}, "activation"),  # None is never a value: choices use "none"
    ],
)
def test_from_dict_errors_name_the_key(values: dict, key: str) -> None:
    with pytest.raises(UserError) as error:
        TrialConfig.from_dict(values)
    assert f"'{key}'" in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_choice_lists_the_allowed_values() -> None:
    with pytest.raises(UserError, match="relu") as error:
        TrialConfig.from_dict({"activation": "sigmoid"})
    assert "tanh" in str(error.value)


def test_complete_requires_every_key() -> None:
    values = TrialConfig().to_dict()
    del values["lr_patience"]
    with pytest.raises(UserError, match="'lr_patience'"):
        TrialConfig.from_dict(values, complete=True)
    # Not complete: the missing key takes its default.
    assert TrialConfig.from_dict(values) == TrialConfig()


def test_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(UserError, match="mapping"):
        TrialConfig.from_dict([("epochs", 3)])  # type: ignore[arg-type]


def test_ints_are_accepted_for_float_fields() -> None:
    config = TrialConfig.from_dict({"learning_rate": 1, "augment_rotate": 10, "max_norm": 3})
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert type(config.augment_rotate) is float
    assert type(config.max_norm) is float


def test_lists_become_tuples() -> None:
    config = TrialConfig(hidden_units=[64, 32])  # type: ignore[arg-type]
    assert config.hidden_units == (64, 32)
    assert hash(config) == hash(TrialConfig(hidden_units=(64, 32)))


def test_replace_validates_and_keeps_the_original() -> None:
    config = TrialConfig()
    assert config.replace(epochs=3).epochs == 3
    assert config.epochs == 20
    with pytest.raises(UserError, match="'epochs'"):
        config.replace(epochs=0)


def test_schema_rows_cover_every_field_in_order() -> None:
    rows = schema_rows()
    assert [row["key"] for row in rows] == FIELDS
    for row in rows:
        assert set(row) == {"key", "type", "allowed", "default", "meaning"}
        assert row["meaning"] and row["allowed"] and row["type"], row
    by_key = {row["key"]: row for row in rows}
    assert by_key["hidden_units"]["type"] == "list of int"
    assert by_key["hidden_units"]["default"] == "[512, 512, 256, 256, 128, 128, 8]"
    assert by_key["activation"]["allowed"] == "relu / elu / gelu / selu / swish / tanh"
    assert by_key["epochs"] == {**by_key["epochs"], "type": "int", "default": "20", "allowed": "1 to 1000"}
