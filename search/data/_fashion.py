"""Fashion-MNIST (Zalando's drop-in for MNIST: same shapes, ten kinds of clothing): its files, sources and checksums.

Sources, in order: the data cache's ``fashion-mnist.npz``; Keras's cache
(``~/.keras/datasets/fashion-mnist/``); the files of Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/``); Keras's download. ``--dataset fashion-mnist:FOLDER`` reads
FOLDER instead, which must hold the four standard IDX ``.gz`` files. Whatever the source, the decoded
arrays are used only once their sha256 match; a verified copy goes into the cache. The split is MNIST's.
"""

from __future__ import annotations

import gzip
import math
import struct
import sys
from pathlib import Path

import numpy as np

from search.data import _mnist
from search.data._cache import (
    CORRUPT,
    Arrays,
    check_writable,
    data_dir,
    keras_datasets_dir,
    one_line,
    read_npz,
    verify,
    write_npz,
)
from search.data._dataset import Dataset, split
from search.errors import UserError

NAME = "fashion-mnist"  # its name on the command line (--dataset) and in a study's identity
CACHE_NAME = "fashion-mnist.npz"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# Where keras.datasets.fashion_mnist downloads the same four files from.
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# sha256 of the decoded arrays (uint8, C order), taken from Debian's files. Their .gz bytes differ from
# Zalando's (recompressed), but decompressed they have the md5s other loaders publish for the raw IDX
# files (train images f4a8712d7a061bf5bd6d2ca38dc4d50a, labels 9018921c3c673c538a1fc5bad174d6f9), and
# the training pixels' mean and standard deviation are the known 0.2860 and 0.3530.
ARRAY_SHA256 = {
    "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}
CHECKSUM = ARRAY_SHA256["x_train"][:16]
HOW_TO_GET = (
    "install Debian's package (apt-get install dataset-fashion-mnist), or name a folder holding its four "
    "files as Zalando names them (train-images-idx3-ubyte.gz and the others): --dataset fashion-mnist:FOLDER"
)


class _FetchFailed(Exception):
    """Keras's download could not deliver (network)."""


def load_fashion(folder: Path | None = None, cache_dir: Path | None = None) -> Dataset:
    """The verified Fashion-MNIST split: from `folder` when named, else from the cache or the first source that has it.

    Raises:
        UserError: the named folder lacks a file or holds other data, the cache is corrupt or
            cannot be written, or no source has it (the message says how to get it).
    """
    cache = (cache_dir or data_dir()) / CACHE_NAME
    if folder is not None:
        arrays, source = _from_named_folder(folder), folder
        if not cache.exists():  # so a resume, a worker or `search train` finds it without the folder
            check_writable(cache.parent, "Fashion-MNIST")
            write_npz(cache, arrays, "Fashion-MNIST")
    elif cache.exists():
        arrays, source = _read_cache(cache), cache
    else:
        check_writable(cache.parent, "Fashion-MNIST")
        arrays, source = _from_sources(), cache
        write_npz(cache, arrays, "Fashion-MNIST")
    return split(NAME, arrays, n_classes=_mnist.N_CLASSES, checksum=CHECKSUM, source=str(source))


def read_idx(path: Path) -> np.ndarray:
    """The array in a gzipped IDX file of unsigned bytes (MNIST's format); ValueError (or OSError) if not one.

    The format: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, one
    big-endian 32-bit size per dimension, then the values in C order.
    """
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path.name} is not an IDX file of unsigned bytes")
    header = 4 + 4 * raw[3]
    shape = struct.unpack(f">{raw[3]}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise ValueError(f"{path.name} holds {len(raw) - header} values, its header says {math.prod(shape)}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _read_folder(folder: Path) -> Arrays:
    """The four arrays of a folder of the standard files, verified; raises ValueError (or OSError) otherwise."""
    arrays = {name: read_idx(folder / file) for name, file in FILES.items()}
    _verify(arrays)
    return arrays


def _verify(arrays: Arrays) -> None:
    """Raises ValueError unless the arrays are Fashion-MNIST's (MNIST's shapes, these checksums)."""
    verify(arrays, ARRAY_SHA256, _mnist.ARRAY_SHAPES)


def _has_files(folder: Path) -> bool:
    return all((folder / file).is_file() for file in FILES.values())


def _from_named_folder(folder: Path) -> Arrays:
    missing = [file for file in FILES.values() if not (folder / file).is_file()]
    if missing:
        raise UserError(
            f"{folder} has no {', '.join(missing)} (--dataset {NAME}:FOLDER reads Fashion-MNIST's four files as "
            "Zalando names them); or install Debian's package (apt-get install dataset-fashion-mnist) and leave "
            "out :FOLDER"
        )
    try:
        return _read_folder(folder)
    except CORRUPT as exc:
        raise UserError(f"{folder} does not hold Fashion-MNIST ({one_line(exc)}); {HOW_TO_GET}") from None


def _read_cache(path: Path) -> Arrays:
    try:
        arrays = read_npz(path, tuple(FILES))
        _verify(arrays)
    except CORRUPT as exc:
        raise UserError(f"{path} is corrupt ({one_line(exc)}); delete it and run `make data DATASET={NAME}`") from None
    return arrays


def _from_sources() -> Arrays:
    """Keras's cache, then Debian's files (a bad copy is skipped), then Keras's download; else how to get it."""
    keras_folder = keras_datasets_dir() / NAME
    for folder, what in ((keras_folder, "Keras's cache"), (DEBIAN_DIR, "Debian's dataset-fashion-mnist")):
        if not _has_files(folder):
            continue
        try:
            arrays = _read_folder(folder)
        except CORRUPT as exc:
            print(f"Fashion-MNIST: skipping {folder} ({one_line(exc)})", file=sys.stderr)
            continue
        print(f"Fashion-MNIST: using {what} {folder}", file=sys.stderr)
        return arrays
    print("Fashion-MNIST: not in Keras's cache nor in Debian's package; trying Keras's download", file=sys.stderr)
    try:
        _keras_download(keras_folder)
        return _read_folder(keras_folder)
    except _FetchFailed as exc:
        reason = f"Keras's download failed ({exc})"
    except CORRUPT as exc:
        reason = f"Keras's download is not the known Fashion-MNIST ({one_line(exc)})"
    raise UserError(f"Fashion-MNIST is not in {keras_folder} nor in {DEBIAN_DIR}, and {reason}; {HOW_TO_GET}")


def _keras_download(folder: Path) -> None:
    """The four files into `folder` (Keras's cache, where `keras.datasets.fashion_mnist` puts them)."""
    try:
        import keras  # slow to import, and only needed when no other source has the files

        for file in FILES.values():
            keras.utils.get_file(
                file, origin=KERAS_ORIGIN + file, cache_dir=str(folder.parent.parent), cache_subdir=f"datasets/{NAME}"
            )
    except Exception as exc:  # Keras raises a bare Exception on network errors
        raise _FetchFailed(one_line(exc)) from None
