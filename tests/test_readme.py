"""The README's promises that code can check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_schema_table_matches_the_code():
    readme = (REPO / "docs" / "config.md").read_text()
    table = readme.split("<!-- schema:start -->\n")[1].split("<!-- schema:end -->")[0]
    generated = subprocess.run(
        [sys.executable, "-m", "search", "schema"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert table == generated, (
        "the schema table in docs/config.md is stale: paste `python -m search schema` between the markers"
    )


def test_every_make_command_the_docs_show_is_a_makefile_target():
    """A renamed or removed target must not leave the README (or docs/) promising a command that fails."""
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    shown = {
        name for doc in docs for code in _code(doc.read_text()) for name in re.findall(r"\bmake ([a-z][\w-]*)", code)
    }
    assert {"search", "test"} <= shown, "the README must show the two set-up commands"
    assert shown <= targets, f"shown but not in the Makefile: {sorted(shown - targets)}"


def _code(markdown: str) -> list[str]:
    """The fenced blocks and inline `code` spans of a markdown text: where commands are shown."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return fenced + re.findall(r"`([^`\n]+)`", prose)
