"""The user's own arrays (``--dataset npz:PATH``): read, checked with one line per problem, split.

Keys: ``x_train``, ``y_train``, ``x_test``, ``y_test``, and optionally ``x_val`` with ``y_val``
(without them the last sixth of the training arrays validates). ``x_*``: uint8 images, (N, H, W) or
(N, H, W, C), or floating-point features, (N, ...); every split of one kind and one example shape.
``y_*``: integer labels 0 to K-1, one per example, K taken from the training split, which must hold
every class; a validation or test label the training split lacks is refused. No array is read as
Python objects (``allow_pickle=False``): the file can hold data, never run code.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from search.data._cache import CORRUPT, Arrays, one_line
from search.data._dataset import Dataset, split, validation_size
from search.errors import UserError

PREFIX = "npz:"
REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
LAYOUT = "an .npz dataset holds x_train, y_train, x_test, y_test and optionally x_val, y_val"


class _Bad(Exception):
    """One problem with the file, in words; `load_npz` puts the file's name in front."""


def load_npz(path: Path) -> Dataset:
    """The checked and split arrays of `path`; a UserError naming the key and the problem otherwise."""
    try:
        arrays = _read(path)
        checksum = _checksum(arrays)
        _check_arrays(arrays)
        held_out = "x_val" not in arrays
        if held_out and not validation_size(len(arrays["x_train"])):
            n_train = len(arrays["x_train"])
            raise _Bad(f"x_train has {n_train} examples, too few to hold out a sixth; add x_val and y_val")
        typed = {key: _typed(key, array) for key, array in arrays.items()}
        data = split(f"{PREFIX}{path}", typed, n_classes=0, checksum=checksum, source=str(path))
        n_classes = _check_labels(data, held_out)
    except _Bad as bad:
        raise UserError(f"{path}: {bad}") from None
    return replace(data, n_classes=n_classes)


def _read(path: Path) -> Arrays:
    if not path.is_file():
        raise _Bad(f"no such file; --dataset npz:PATH takes the path of an .npz file ({LAYOUT})")
    try:
        with path.open("rb") as stream:  # our own handle: np.load(path) leaks its file when the zip is damaged
            npz = np.load(stream, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise _Bad(f"not an .npz archive but a single array; save the arrays with numpy.savez ({LAYOUT})")
            _check_keys(set(npz.files))
            return {key: _array(npz, key) for key in sorted(npz.files)}
    except CORRUPT as exc:
        raise _Bad(f"not a readable .npz archive ({one_line(exc)}); save the arrays with numpy.savez") from None


def _check_keys(keys: set[str]) -> None:
    unknown = sorted(keys - {*REQUIRED, *OPTIONAL})
    if unknown:
        raise _Bad(f"unknown key '{unknown[0]}'; {LAYOUT}")
    missing = [key for key in REQUIRED if key not in keys]
    if missing:
        raise _Bad(f"has no {missing[0]}; {LAYOUT}")
    if len(keys & set(OPTIONAL)) == 1:
        given, other = ("x_val", "y_val") if "x_val" in keys else ("y_val", "x_val")
        raise _Bad(f"has {given} but no {other}; give both or neither")


def _array(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError:  # an object array, which allow_pickle=False refuses
        raise _Bad(f"{key} holds Python objects; store numbers: uint8 images, float features, integer labels") from None


def _checksum(arrays: Arrays) -> str:
    """A short id of the file's contents: sha256 over each array's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key} {array.dtype.str} {array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _check_arrays(arrays: Arrays) -> None:
    """Kinds, shapes, lengths, emptiness and finiteness of every split, in that order."""
    splits = [key[2:] for key in arrays if key.startswith("x_")]
    for name in splits:
        _check_examples(f"x_{name}", arrays[f"x_{name}"])
        _check_labels_array(f"y_{name}", arrays[f"y_{name}"])
    reference = arrays["x_train"]
    for name in splits:
        x, y = arrays[f"x_{name}"], arrays[f"y_{name}"]
        if _kind(x) != _kind(reference) or x.shape[1:] != reference.shape[1:]:
            raise _Bad(
                f"x_{name} holds {_kind(x)} of shape {x.shape[1:]}, but x_train {_kind(reference)} of shape "
                f"{reference.shape[1:]}; every split needs the same"
            )
        if len(x) != len(y):
            raise _Bad(f"x_{name} has {len(x)} examples but y_{name} {len(y)} labels; give one label per example")
        if not len(x):
            raise _Bad(f"x_{name} is empty; every split needs examples")
        if _kind(x) == "features" and not np.isfinite(x).all():
            bad = np.count_nonzero(~np.isfinite(x))
            raise _Bad(f"x_{name} has {bad} NaN or infinite values; features must be finite")


def _check_examples(key: str, x: np.ndarray) -> None:
    if x.dtype == np.uint8:
        if x.ndim not in (3, 4):
            raise _Bad(
                f"{key} is uint8 of shape {x.shape}: uint8 arrays are images, (N, H, W) or (N, H, W, C); "
                "store features as float32"
            )
    elif not np.issubdtype(x.dtype, np.floating):
        raise _Bad(f"{key} is {x.dtype}: images are uint8 and features floating point (x.astype('float32'))")
    elif x.ndim < 2:
        raise _Bad(f"{key} has shape {x.shape}: one row per example, (N, features)")


def _check_labels_array(key: str, y: np.ndarray) -> None:
    if not np.issubdtype(y.dtype, np.integer):
        raise _Bad(f"{key} is {y.dtype}: labels are integers 0 to K-1 (y.astype('int64'))")
    if y.ndim != 1:
        raise _Bad(f"{key} has shape {y.shape}: one label per example, shape (N,)")


def _kind(x: np.ndarray) -> str:
    return "images" if x.dtype == np.uint8 else "features"


def _typed(key: str, array: np.ndarray) -> np.ndarray:
    """Labels as int32 and features as float32 (what Keras computes in); images stay uint8."""
    if key.startswith("y_"):
        return array.astype(np.int32)
    return array if array.dtype == np.uint8 else array.astype(np.float32)


def _check_labels(data: Dataset, held_out: bool) -> int:
    """The number of classes K; refuses labels below 0, a class missing from training, and labels it lacks."""
    train = "y_train (its first five sixths)" if held_out else "y_train"
    val = "the last sixth of y_train (the validation split)" if held_out else "y_val"
    named = {train: data.y_train, val: data.y_val, "y_test": data.y_test}
    for name, y in named.items():
        if y.min() < 0:
            raise _Bad(f"{name} has label {y.min()}; labels run from 0 to K-1")
    classes = np.unique(data.y_train)
    n_classes = int(classes[-1]) + 1
    if len(classes) < n_classes:
        missing = sorted(set(range(n_classes)) - set(classes.tolist()))[0]
        raise _Bad(f"{train} has no example of class {missing}, though its labels run to {n_classes - 1}")
    if n_classes < 2:
        raise _Bad(f"{train} holds class 0 only; a classifier needs two classes or more")
    for name, y in list(named.items())[1:]:
        unknown = sorted(set(np.unique(y).tolist()) - set(classes.tolist()))
        if unknown:
            raise _Bad(f"{name} has label {unknown[0]}, which {train} lacks (it holds 0 to {n_classes - 1})")
    return n_classes
