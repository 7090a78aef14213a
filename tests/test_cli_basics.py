"""Tests for search/cli.py's offline commands, run as real `python -m search` subprocesses."""

from __future__ import annotations

import dataclasses

from conftest import search_cli

from search.config import TrialConfig
from spaces import SPACES


def test_spaces_lists_every_registered_space_with_its_docs() -> None:
    result = search_cli("spaces")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headings = [line for line in lines if line and not line.startswith(" ")]
    assert headings == list(SPACES)
    assert "  Space `size`: how deep and how wide" in result.stdout
    assert "units_layer_<k>" in result.stdout
    # The parameters, read from the spaces themselves (spaces/_catalog.py), under each space's docs.
    assert "    units_layer_3  one of 8, 16, 32, 64, 128, 256, 512, 1024, 2048; only when n_layers in 3-8" in lines
    assert any(
        line.split()
        == [
            "sgd_learning_rate",
            "float",
            "0.01",
            "to",
            "0.3,",
            "log",
            "scale;",
            "only",
            "when",
            "optimizer",
            "in",
            "{sgd}",
        ]
        for line in lines
    )


def test_schema_has_a_row_per_config_field() -> None:
    result = search_cli("schema")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| key | type | allowed | default | meaning |"
    rows = [line for line in lines[2:] if line.startswith("| `")]
    assert len(rows) == len(lines) - 2
    keys = [row.split("|")[1].strip().strip("`") for row in rows]
    assert keys == [f.name for f in dataclasses.fields(TrialConfig)]
    for row in rows:
        assert row.count("|") == 6, row  # five cells: no meaning text breaks the table
    epochs = next(row for row in rows if row.startswith("| `epochs`"))
    assert [cell.strip() for cell in epochs.split("|")[2:5]] == ["int", "1 to 1000", "20"]


def test_unknown_command_fails_with_a_usage_message() -> None:
    result = search_cli("frobnicate")
    assert result.returncode != 0
    assert "frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_fails() -> None:
    result = search_cli()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
