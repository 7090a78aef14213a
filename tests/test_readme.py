"""The README's promises that code can check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_schema_table_matches_the_code():
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- schema:start -->\n")[1].split("<!-- schema:end -->")[0]
    generated = subprocess.run(
        [sys.executable, "-m", "search", "schema"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert table == generated, "README's schema table is stale: paste `python -m search schema` between the markers"


def test_readme_shows_the_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    assert "make search SPACE=full" in readme
    assert "make test" in readme
