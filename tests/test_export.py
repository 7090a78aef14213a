"""Tests for search/export.py: a real study exported to YAML and read back, boundary warnings, every load error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_STUDY, search_cli
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from search.config import TrialConfig
from search.configfile import ConfigFile, read_yaml, write_yaml
from search.edges import boundary_warnings
from search.errors import UserError
from search.export import export_trial
from search.record import TrialPlan


def test_export_then_read_gives_the_identical_config(tiny_study: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name=TINY_STUDY, storage=tiny_study)
    exported = export_trial(tiny_study, TINY_STUDY)
    write_yaml(exported, tmp_path / "best.yaml")
    again = read_yaml(tmp_path / "best.yaml")
    assert exported.config == TrialConfig.from_dict(study.best_trial.user_attrs["config"], complete=True)
    assert again.config == exported.config
    assert again.provenance == exported.provenance
    assert again.warnings == exported.warnings
    assert exported.provenance["trial"] == study.best_trial.number
    assert exported.provenance["value"] == study.best_trial.value
    assert exported.provenance["command"] == study.user_attrs["command"]
    assert exported.provenance["param_count"] == study.best_trial.user_attrs["param_count"]


def test_export_lists_every_key_in_schema_order_with_its_meaning(tiny_study: str) -> None:
    text = export_trial(tiny_study).to_yaml("best.yaml")  # the storage holds one study: no name needed
    assert text.startswith("# An MLP-on-MNIST config exported by mlp-search: trial ")
    assert "make train CONFIG=best.yaml" in text
    body = text.split("\nconfig:\n")[1].split("\nprovenance:\n")[0].splitlines()
    fields = dataclasses.fields(TrialConfig)
    assert [line.split(":")[0].strip() for line in body] == [f.name for f in fields]
    for line, f in zip(body, fields, strict=True):
        assert line.endswith(f"  # {f.metadata['doc']}"), line
    document = yaml.safe_load(text)
    assert list(document) == ["config", "provenance", "warnings"]
    assert {"study", "space", "backend", "trial", "objective", "value", "epochs_run", "best_epoch"} <= set(
        document["provenance"]
    )
    assert {"param_count", "dataset", "versions", "exported_at", "command"} <= set(document["provenance"])


def test_cli_exports_trial_0_the_baseline_without_range_warnings(tiny_study: str) -> None:
    result = search_cli("export", "--study", TINY_STUDY, "--trial", "0", "--storage", tiny_study)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["provenance"]["trial"] == 0
    assert document["provenance"]["baseline"] is True
    assert tuple(document["config"]["hidden_units"]) == TrialConfig().hidden_units  # the reference network
    # Not a draw of the space, so at no edge of its ranges (its last layer's 8 units are size's smallest).
    assert document["warnings"] == [] and "warning" not in result.stderr


def _trial(name: str, value: object, distribution: optuna.distributions.BaseDistribution) -> optuna.trial.FrozenTrial:
    return create_trial(value=0.9, params={name: value}, distributions={name: distribution})


@pytest.mark.parametrize(
    ("name", "value", "distribution", "expected"),
    [
        ("n_layers", 8, IntDistribution(1, 8), "n_layers = 8 is at the top of its searched range (1 to 8)"),
        ("n_layers", 4, IntDistribution(1, 8), None),
        ("units_layer_1", 16, CategoricalDistribution([16, 64, 1024]), "at the bottom of its searched range"),
        ("units_layer_1", 64, CategoricalDistribution([16, 64, 1024]), None),
        ("learning_rate", 0.0095, FloatDistribution(1e-5, 1e-2, log=True), "at the top of its searched range"),
        ("learning_rate", 3e-4, FloatDistribution(1e-5, 1e-2, log=True), None),
        ("dropout", 0.004, FloatDistribution(0.0, 0.5), "0 is off and cannot go lower"),
        ("l2", 1e-6, FloatDistribution(1e-6, 1e-2, log=True), "the best may lie below it; widen its range"),
        ("batchnorm", "none", CategoricalDistribution(["none", "before_activation", "after_activation"]), None),
        ("batch_size", 256, CategoricalDistribution([128, 256]), None),  # two choices: every value is an edge
    ],
)
def test_boundary_warning(name: str, value: object, distribution, expected: str | None) -> None:
    warnings = boundary_warnings(_trial(name, value, distribution), "dropout")
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expected in warnings[0], warnings
        assert warnings[0].startswith(f"{name} = {value} ")
    if expected and "widen" in expected:
        assert "widen its range in space 'dropout' (spaces/) and search again" in warnings[0]


def test_the_spaces_best_known_config_exports_without_range_warnings(tmp_path: Path) -> None:
    # Queued as the study's prior, not drawn: that its values sit at range edges says nothing of the ranges.
    url = f"sqlite:///{tmp_path / 'p.db'}"
    _handmade(url, "p", [TrialState.COMPLETE], params={"n_layers": 8}, prior=True)
    assert export_trial(url, "p", 0).warnings == []
    _handmade(url, "drawn", [TrialState.COMPLETE], params={"n_layers": 8})
    assert "n_layers = 8 is at the top" in export_trial(url, "drawn", 0).warnings[0]


def _handmade(url: str, name: str, states: list[TrialState], params: dict | None = None, prior: bool = False) -> None:
    """A study with realistic attrs, its trials added directly (training is not the point here)."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for key, value in {"space": "size", "backend": "tpe", "objective": "val_accuracy", "command": "x"}.items():
        study.set_user_attr(key, value)
    for state in states:
        study.add_trial(
            create_trial(
                state=state,
                value=0.9 if state == TrialState.COMPLETE else None,
                params=params or {"n_layers": 2},
                distributions={"n_layers": IntDistribution(1, 8)},
                user_attrs={
                    "config": TrialConfig(hidden_units=(64, 32)).to_dict(),
                    "param_count": 52_650,
                    **TrialPlan(prior=prior).to_attrs(),
                },
            )
        )


@pytest.fixture
def handmade(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    _handmade(url, "mixed", [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL])
    _handmade(url, "hopeless", [TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL])
    return url


@pytest.mark.parametrize(
    ("study", "trial", "message"),
    [
        ("mixed", 0, "trial 0 of study 'mixed' is PRUNED, not COMPLETE; pick a complete one"),
        ("mixed", 2, "trial 2 of study 'mixed' is FAIL, not COMPLETE"),
        ("mixed", 7, "study 'mixed' has no trial 7 (it has trials 0 to 2)"),
        ("hopeless", None, "study 'hopeless' has no complete trial (1 pruned, 2 fail); run more trials first"),
        ("nope", None, "no study named 'nope' in sqlite:///"),
        (None, None, "holds several studies (mixed, hopeless); name one with --study"),
    ],
)
def test_what_cannot_be_exported_is_one_clear_line(handmade: str, study, trial, message: str) -> None:
    with pytest.raises(UserError) as error:
        export_trial(handmade, study, trial)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^no database at .*none\.db; run `make search` first"):
        export_trial(f"sqlite:///{tmp_path / 'none.db'}")


def test_export_picks_the_complete_trial_among_failed_ones(handmade: str) -> None:
    exported = export_trial(handmade, "mixed")
    assert exported.provenance["trial"] == 1
    assert exported.config.hidden_units == (64, 32)
    assert exported.warnings == []


def test_a_paused_trial_better_than_the_export_is_named_in_a_warning(handmade: str) -> None:
    study = optuna.load_study(study_name="mixed", storage=handmade)
    paused = TrialPlan(epochs=27, pause=True).to_attrs()
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={27: 0.95}, user_attrs=paused))
    (warning,) = export_trial(handmade, "mixed").warnings
    assert warning.startswith("trial 3, paused at epoch 27 by the asha pruner, reached 0.9500 validation, better ")
    assert "this trial's 0.9000" in warning
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={3: 0.99}))  # pruned, not paused
    assert len(export_trial(handmade, "mixed").warnings) == 1
    # A trial that continues it (its finish, running or done) trained it on: nothing to warn of.
    study.add_trial(create_trial(state=TrialState.RUNNING, user_attrs=TrialPlan(epochs=81, continues=3).to_attrs()))
    assert export_trial(handmade, "mixed").warnings == []


def test_cli_export_errors_exit_2_with_one_line(handmade: str) -> None:
    result = search_cli("export", "--study", "hopeless", "--storage", handmade)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last == "error: study 'hopeless' has no complete trial (1 pruned, 2 fail); run more trials first"
    assert "Traceback" not in result.stderr


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return path


def _exported_document() -> dict:
    text = ConfigFile(
        TrialConfig(),
        {"study": "s", "space": "size", "backend": "tpe", "trial": 3, "objective": "val_accuracy", "value": 0.97},
    ).to_yaml()
    return yaml.safe_load(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dropuot": 0.2}, "unknown config key 'dropuot'; known keys: hidden_units,"),
        ({"dropout": "lots"}, "config key 'dropout' must be float, got 'lots' (str)"),
        ({"epochs": 2.5}, "config key 'epochs' must be int, got 2.5 (float)"),
        ({"hidden_units": [64, "x"]}, "config key 'hidden_units' must be int"),
        ({"dropout": 1.5}, "config key 'dropout' is 1.5; allowed range: 0.0 to 0.9"),
        ({"activation": "sigmoid"}, "config key 'activation' is 'sigmoid'; allowed: relu"),
        ({"learning_rate": "1e-3"}, "config key 'learning_rate' is the text '1e-3'; write it with a dot (1.0e-3)"),
    ],
)
def test_every_config_error_is_one_line_naming_the_key(tmp_path: Path, change: dict, message: str) -> None:
    document = _exported_document()
    document["config"].update(change)
    with pytest.raises(UserError) as error:
        read_yaml(_write(tmp_path, document))
    assert str(error.value).startswith(f"{tmp_path / 'config.yaml'}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    document = _exported_document()
    del document["config"]["momentum"]
    with pytest.raises(UserError, match="config key 'momentum' is missing; a complete config lists every key"):
        read_yaml(_write(tmp_path, document))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("config:\n  dropout: 0.1\n    l2: 0.0\n", "is not valid YAML: mapping values are not allowed here at line 3"),
        ("config: [1, 2\n", "is not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping (an exported file with a `config:` block, or every config key), not list"),
        ("", "must be a mapping"),
        ("just text\n", "not str"),
        ("config: {}\nextra: 1\n", "unknown top-level key 'extra'; an exported file has config, provenance, warnings"),
        ("config: {}\nprovenance: [1]\n", "`provenance` must be a mapping"),
        ("config: [1]\n", "a config must be a mapping of keys to values, not list"),
    ],
)
def test_malformed_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as error:
        read_yaml(_write(tmp_path, text))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_bare_mapping_of_every_key_is_accepted(tmp_path: Path) -> None:
    config = TrialConfig(hidden_units=(128, 64), dropout=0.25, learning_rate=3e-4)
    loaded = read_yaml(_write(tmp_path, config.to_dict()))
    assert loaded.config == config
    assert loaded.provenance == {} and loaded.warnings == []


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cannot read .*nothing\.yaml \(No such file or directory\); export one"):
        read_yaml(tmp_path / "nothing.yaml")


def test_loading_never_runs_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"config: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(UserError, match="is not valid YAML"):
        read_yaml(_write(tmp_path, text))
    assert not marker.exists()
