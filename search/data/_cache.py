"""The data cache: where verified copies of the public datasets live, and reading, checking and writing them.

The cache follows the user, not the current folder: `$SEARCH_DATA_DIR` if set, else the XDG user
cache folder on every platform (`$XDG_CACHE_HOME`, else `~/.cache`) with a subfolder `mlp-search`.
Versions before it kept the cache in `./data`; a dataset's loader reads that folder as one more
source and copies what it finds into the cache, so such a cache is still found (and only once more).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import UserError

APP_FOLDER = "mlp-search"
LEGACY_DIR = Path("data")  # the cache of versions before $SEARCH_DATA_DIR, relative to where they ran

Arrays = dict[str, np.ndarray]
# What reading a damaged or foreign .npz (or .gz) file raises.
CORRUPT = (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile)


def data_dir() -> Path:
    """The cache folder: `$SEARCH_DATA_DIR`, else `$XDG_CACHE_HOME/mlp-search`, else `~/.cache/mlp-search`."""
    if chosen := os.environ.get("SEARCH_DATA_DIR"):
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG rule: a relative path is invalid there and is ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / APP_FOLDER


def legacy_copy(name: str) -> Path | None:
    """`./data/<name>`, where versions before the user cache wrote it, if it is there."""
    old = LEGACY_DIR / name
    return old if old.is_file() else None


def keras_datasets_dir() -> Path:
    """Keras's own download cache (`$KERAS_HOME` or `~/.keras`, then `datasets/`)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def read_npz(path: Path, names: tuple[str, ...]) -> Arrays:
    """The arrays `names` of an .npz file; raises ValueError (or a zip/OS error) when it is no such file."""
    # Our own handle: np.load(path) leaks its file when the zip is damaged.
    with path.open("rb") as stream:
        npz = np.load(stream, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
            raise TypeError("not an .npz archive")
        missing = [name for name in names if name not in npz.files]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return {name: npz[name] for name in names}


def verify(arrays: Arrays, sha256: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> None:
    """Raises ValueError unless every array has its uint8 dtype, its shape and its sha256."""
    for name, expected in sha256.items():
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != shapes[name]:
            raise ValueError(f"{name} is {array.dtype} {array.shape}, not uint8 {shapes[name]}")
        if sha256_of(np.ascontiguousarray(array)) != expected:
            raise ValueError(f"{name} checksum mismatch")


def sha256_of(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def check_writable(folder: Path, what: str) -> None:
    """Fails before any download if the cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write the {what} cache in {folder} ({exc.strerror});"
            " make that folder writable or set SEARCH_DATA_DIR to one you can write to"
        ) from None


def write_npz(path: Path, arrays: Arrays, what: str) -> None:
    """Writes the arrays as an .npz atomically (a crash never leaves a half file) and says so on stderr."""
    # Not mkstemp: its 0600 mode would ignore the umask; the pid keeps workers apart.
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with part.open("wb") as stream:
            np.savez(stream, **arrays)
        os.replace(part, path)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(
                f"cannot write {path} ({exc.strerror}); free disk space or make {path.parent} writable"
            ) from None
        raise
    print(f"{what}: wrote {path}", file=sys.stderr)


def one_line(reason: object) -> str:
    """The last non-empty line of an error or of a tool's stderr, for a one-line message."""
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[-1] if lines else type(reason).__name__
