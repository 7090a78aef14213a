"""A config YAML file: written with every key and its meaning, read back validated, one error line for any fault.

What `search export` writes and `search train` reads: `config` (complete, in schema order),
`provenance` (where it came from) and `warnings` (what to check); a bare mapping of every
config key reads too.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search.config import TrialConfig
from search.data import title
from search.errors import UserError
from search.spec import DEFAULT_DATASET

TOP_LEVEL_KEYS = ("config", "provenance", "warnings")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class ConfigFile:
    """A complete config with where it came from and what to check: the contents of a config YAML file."""

    config: TrialConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_yaml(self, name: str = "best.yaml") -> str:
        """The YAML text: a header comment, then `config` (every key, schema order), `provenance`, `warnings`."""
        return "\n".join([*_header(self.provenance, name), "config:", *_config_lines(self.config), _rest(self)])


def read_yaml(path: Path) -> ConfigFile:
    """Read and validate a config file: an exported one, or a bare mapping of every config key.

    Only `yaml.safe_load` reads it, so a file can hold data but never run code. Raises a
    one-line UserError for a missing or binary file, malformed YAML (with its line), an unknown
    top-level key, and every config error (unknown, missing, mistyped or out-of-range key).
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}); export one with `make export`") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (not UTF-8); give the YAML file `make export` wrote") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise UserError(f"{path} is not valid YAML: {problem}{where}; fix it or export it again") from None
    if not isinstance(document, dict):
        raise UserError(
            f"{path} must be a mapping (an exported file with a `config:` block, or every config key), "
            f"not {type(document).__name__}"
        )
    return _parsed(document, path)


def _parsed(document: dict, path: Path) -> ConfigFile:
    if "config" not in document:
        return ConfigFile(_validated(document, path))
    unknown = sorted(str(k) for k in set(document) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UserError(
            f"{path}: unknown top-level key '{unknown[0]}'; an exported file has {', '.join(TOP_LEVEL_KEYS)}"
        )
    provenance, warnings = document.get("provenance") or {}, document.get("warnings") or []
    if not isinstance(provenance, dict) or not isinstance(warnings, list):
        raise UserError(f"{path}: `provenance` must be a mapping and `warnings` a list; export the file again")
    return ConfigFile(_validated(document["config"], path), provenance, [str(w) for w in warnings])


def _validated(values: Any, path: Path) -> TrialConfig:
    floats = {f.name for f in dataclasses.fields(TrialConfig) if isinstance(f.default, float)}
    for key, value in values.items() if isinstance(values, dict) else ():
        if key in floats and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads 1e-3 as text: only 1.0e-3 or 0.001 are numbers.
            raise UserError(
                f"{path}: config key '{key}' is the text {value!r}; write it with a dot (1.0e-3) or as 0.001"
            )
    try:
        return TrialConfig.from_dict(values, complete=True)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def write_yaml(exported: ConfigFile, path: Path) -> None:
    """Write the export to `path`, or raise a UserError saying why it cannot be written."""
    try:
        path.write_text(exported.to_yaml(path.name))
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror}); pick another --out") from None


def _header(provenance: dict[str, Any], name: str) -> list[str]:
    origin = (
        f"trial {provenance['trial']} of study '{provenance['study']}' (space {provenance['space']}, "
        f"backend {provenance['backend']}), {provenance['objective']} {provenance['value']:.4f}"
        if provenance
        else "a hand-made config"
    )
    lines = [
        f"# An MLP-on-{title(provenance.get('dataset') or DEFAULT_DATASET)} config exported by mlp-search: {origin}.",
        "# `config` is complete (every key of docs/config.md): enough to rebuild the model and its",
        "# training in plain Keras. `provenance` says where it came from; `warnings` what to check.",
        f"# Retrain it and evaluate once on the test set: make train CONFIG={name}",
        f"#   (or: python -m search train {name} [--full-train] [--out-dir DIR])",
    ]
    if provenance.get("subset"):
        lines.append(f"# The study trained on the first {provenance['subset']} images: add --subset to compare.")
    return lines


def _config_lines(config: TrialConfig) -> list[str]:
    """One `key: value  # meaning` line per field, in schema order (lists in flow style, so one line each)."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None, width=math.inf)
    docs = [f.metadata["doc"] for f in dataclasses.fields(TrialConfig)]
    return [f"  {line}  # {doc}" for line, doc in zip(text.splitlines(), docs, strict=True)]


def _rest(exported: ConfigFile) -> str:
    provenance = yaml.safe_dump({"provenance": exported.provenance}, sort_keys=False, width=math.inf)
    warnings = yaml.safe_dump({"warnings": exported.warnings}, default_flow_style=False, width=math.inf)
    return provenance + warnings
