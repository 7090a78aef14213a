"""The data cache follows the user (search/data/_cache.py): where it is, and `search` in other folders finding it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, REPO

from search.data import data_dir, fetch


def test_the_cache_is_search_data_dir_else_the_xdg_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEARCH_DATA_DIR", str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "chosen"
    monkeypatch.delenv("SEARCH_DATA_DIR")
    assert data_dir() == tmp_path / "xdg" / "mlp-search"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid by the XDG rule: ignored
    assert data_dir() == tmp_path / "home" / ".cache" / "mlp-search"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_dir() == tmp_path / "home" / ".cache" / "mlp-search"


def _search_data(cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`search data` in `cwd` for a user whose home is `home`, with no SEARCH_DATA_DIR and no way to download."""
    env = {k: v for k, v in os.environ.items() if k not in ("SEARCH_DATA_DIR", "XDG_CACHE_HOME")}
    env |= {"HOME": str(home), "KERAS_HOME": str(home / ".keras"), "PYTHONPATH": str(REPO)}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(home)}
    command = [sys.executable, "-m", "search", "data"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_an_old_data_folder_is_taken_into_the_cache_which_other_folders_then_find(tmp_path: Path) -> None:
    project, elsewhere, home = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / "mnist.npz").symlink_to(fetch(DATA))  # the ./data cache an earlier version made
    elsewhere.mkdir()
    cache = home / ".cache" / "mlp-search" / "mnist.npz"

    first = _search_data(project, home)
    assert first.returncode == 0, first.stderr
    assert "MNIST: using the cache of an earlier version data/mnist.npz" in first.stderr
    assert f"MNIST: wrote {cache}" in first.stderr
    assert first.stdout.startswith(f"{cache}: verified; train 50000, validation 10000, test 10000 images")

    again = _search_data(elsewhere, home)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""  # nothing fetched, nothing copied
    assert again.stdout == first.stdout
