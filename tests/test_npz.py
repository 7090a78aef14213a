"""The user's own arrays (search/data/_npz.py): every bad file refused in one line; images and features searched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest
import yaml
from conftest import search_cli

from search.config import TrialConfig
from search.configfile import read_yaml, write_yaml
from search.data import load_dataset
from search.errors import UserError
from search.export import export_trial
from search.final import retrain
from search.study import StudySpec, run_study
from search.train import train

Arrays = dict[str, np.ndarray]


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32x32 colour images of three classes: dim noise, and a bright square in the class's own colour channel."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    x = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        x[y == c, 8:24, 8:24, c] = 220
    return x, y


def _image_arrays(seed: int = 0) -> Arrays:
    (x_train, y_train), (x_test, y_test) = _images(240, seed), _images(60, seed + 1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _feature_arrays() -> Arrays:
    """Twelve float64 features far from zero mean and unit scale; the label is whether the first is above 3."""
    x = np.random.default_rng(2).normal(3.0, 5.0, (600, 12))
    y = (x[:, 0] > 3.0).astype(np.int64)
    return {"x_train": x[:480], "y_train": y[:480], "x_test": x[480:], "y_test": y[480:]}


def _save(path: Path, arrays: Arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _with(**changes: np.ndarray | None) -> Callable[[Arrays], Arrays]:
    """Arrays with some replaced, added, or (None) removed."""
    return lambda arrays: {k: v for k, v in {**arrays, **changes}.items() if v is not None}


def _relabel(key: str, index: int, label: int) -> Callable[[Arrays], Arrays]:
    def change(arrays: Arrays) -> Arrays:
        y = arrays[key].copy()
        y[index] = label
        return {**arrays, key: y}

    return change


def _only_classes(*classes: int) -> Callable[[Arrays], Arrays]:
    def change(arrays: Arrays) -> Arrays:
        y = np.resize(np.array(classes), len(arrays["y_train"]))
        return {**arrays, "y_train": y, "y_test": np.resize(np.array(classes), len(arrays["y_test"]))}

    return change


IMAGES = _image_arrays()
FEATURES = _feature_arrays()
X, Y = IMAGES["x_train"], IMAGES["y_train"]
NAN = FEATURES["x_train"].copy()
NAN[7, 3] = np.nan

# (arrays, change, what the one line must say): one case per check of the loader.
BAD = {
    "missing key": (IMAGES, _with(y_test=None), "has no y_test; an .npz dataset holds x_train, y_train, x_test"),
    "unknown key": (IMAGES, _with(x_valid=X[:10]), "unknown key 'x_valid'"),
    "x_val without y_val": (IMAGES, _with(x_val=X[:10]), "has x_val but no y_val; give both or neither"),
    "objects": (IMAGES, _with(y_train=Y.astype(object)), "y_train holds Python objects"),
    "integer pixels": (IMAGES, _with(x_train=X.astype(np.int16)), "x_train is int16: images are uint8"),
    "uint8 rows": (IMAGES, _with(x_train=X.reshape(240, -1)), "x_train is uint8 of shape (240, 3072): uint8 arrays"),
    "one number each": (FEATURES, _with(x_train=FEATURES["x_train"][:, 0]), "x_train has shape (480,): one row"),
    "float labels": (IMAGES, _with(y_train=Y.astype(np.float32)), "y_train is float32: labels are integers"),
    "label column": (IMAGES, _with(y_train=Y[:, None]), "y_train has shape (240, 1): one label per example"),
    "other image size": (
        IMAGES,
        _with(x_test=IMAGES["x_test"][:, :28, :28]),
        "x_test holds images of shape (28, 28, 3), but x_train images of shape (32, 32, 3)",
    ),
    "images and features": (
        IMAGES,
        _with(x_test=IMAGES["x_test"].astype(np.float32)),
        "x_test holds features of shape (32, 32, 3), but x_train images",
    ),
    "one label short": (IMAGES, _with(y_train=Y[:-1]), "x_train has 240 examples but y_train 239 labels"),
    "empty test set": (IMAGES, _with(x_test=X[:0], y_test=Y[:0]), "x_test is empty; every split needs examples"),
    "NaN": (FEATURES, _with(x_train=NAN), "x_train has 1 NaN or infinite values; features must be finite"),
    "negative label": (IMAGES, _relabel("y_test", 4, -1), "y_test has label -1; labels run from 0 to K-1"),
    "a class missing": (IMAGES, _only_classes(0, 1, 3), "y_train (its first five sixths) has no example of class 2"),
    "one class": (IMAGES, _only_classes(0), "y_train (its first five sixths) holds class 0 only"),
    "test label unseen": (IMAGES, _relabel("y_test", 0, 3), "y_test has label 3, which y_train (its first five"),
    "validation label unseen": (
        IMAGES,
        _with(x_val=X[:30], y_val=np.where(Y[:30] == 2, 5, Y[:30])),
        "y_val has label 5, which y_train lacks (it holds 0 to 2)",
    ),
    "held-out sixth unseen": (
        IMAGES,
        _with(y_train=np.where(np.arange(240) >= 200, 2, np.arange(240) % 2)),
        "the last sixth of y_train (the validation split) has label 2, which y_train (its first five sixths) lacks",
    ),
    "too few to split": (IMAGES, _with(x_train=X[:5], y_train=Y[:5]), "x_train has 5 examples, too few to hold out"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_npz_is_refused_in_one_line_naming_the_key(tmp_path: Path, case: str) -> None:
    arrays, change, said = BAD[case]
    path = _save(tmp_path / "bad.npz", change(arrays))
    with pytest.raises(UserError) as caught:
        load_dataset(f"npz:{path}")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and said in message, message
    assert "\n" not in message


def _npy(path: Path) -> None:
    with path.open("wb") as stream:
        np.save(stream, X)


@pytest.mark.parametrize(
    ("write", "said"),
    [
        (lambda path: None, "no such file; --dataset npz:PATH takes the path of an .npz file"),
        (lambda path: path.write_text("x_train,y_train\n1,2\n"), "not a readable .npz archive ("),
        (_npy, "not an .npz archive but a single array"),
    ],
    ids=["missing", "text", "npy"],
)
def test_a_file_that_is_no_npz_is_refused_in_one_line(tmp_path: Path, write: Callable, said: str) -> None:
    path = tmp_path / "data.npz"
    write(path)
    with pytest.raises(UserError, match=f"^{path}: ") as caught:
        load_dataset(f"npz:{path}")
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    path = _save(tmp_path / "bad.npz", _with(y_train=Y[:-1])(IMAGES))
    result = search_cli("data", "--dataset", f"npz:{path}")
    assert result.returncode == 2
    assert (
        result.stderr == f"error: {path}: x_train has 240 examples but y_train 239 labels; give one label per example\n"
    )


def test_colour_images_are_searched_exported_and_retrained(small: str, tmp_path: Path) -> None:
    path = _save(tmp_path / "squares.npz", IMAGES)
    url, name = f"sqlite:///{tmp_path / 'studies.db'}", f"npz:{path}"
    spec = StudySpec(space=small, backend="random", pruner="none", epochs=1, dataset=name, baseline=False)
    assert run_study(spec, study="s", storage=url, n_trials=1, timeout=None) == 0
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["dataset"] == name
    checksum = {t.user_attrs["dataset"] for t in study.trials}
    assert len(checksum) == 1 and len(study.trials) == 1
    write_yaml(export_trial(url, "s"), tmp_path / "best.yaml")
    provenance = read_yaml(tmp_path / "best.yaml").provenance
    assert (provenance["dataset"], provenance["dataset_checksum"]) == (name, *checksum)
    assert (tmp_path / "best.yaml").read_text().startswith("# An MLP-on-squares.npz config exported by mlp-search")

    scores = retrain(tmp_path / "best.yaml")  # on the data its provenance names
    model = keras.saving.load_model(scores["model"], safe_mode=True)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)
    assert (scores["dataset"], scores["trained_on"]) == (name, "200 training images")  # 240 less the last sixth

    _save(path, _image_arrays(seed=7))  # other images under the same name: not the study's data any more
    with pytest.raises(UserError, match=f"study 's' trained on dataset {checksum.pop()}, but {name} now holds "):
        run_study(spec, study="s", storage=url, n_trials=2, timeout=None)


def test_features_are_normalized_on_the_training_split_inside_the_model(tmp_path: Path) -> None:
    data = load_dataset(f"npz:{_save(tmp_path / 'features.npz', FEATURES)}")
    assert not data.images and data.inputs.shape == (12,) and data.n_classes == 2
    assert (len(data.x_train), len(data.x_val)) == (400, 80)
    np.testing.assert_allclose(data.inputs.mean, data.x_train.mean(axis=0), rtol=1e-5)
    config = TrialConfig(hidden_units=(16,), epochs=3, learning_rate=0.01, batch_size=20)
    result = train(config, data, save_model=tmp_path / "features.keras")
    assert result.best() > 0.8  # the label is one feature's sign: easy once features are scaled
    model = keras.saving.load_model(tmp_path / "features.keras", safe_mode=True)
    assert model.input_shape == (None, 12) and model.output_shape == (None, 2)
    scaled = keras.ops.convert_to_numpy(model.get_layer("normalize")(data.x_train))
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-3)


def test_augmenting_features_is_refused_before_a_study_or_a_training(tmp_path: Path) -> None:
    name = f"npz:{_save(tmp_path / 'features.npz', FEATURES)}"
    spec = StudySpec(space="full", backend="tpe", dataset=name)
    with pytest.raises(UserError, match=r"^space 'full' samples augmentation \(augment_translate, ") as caught:
        run_study(spec, study="f", storage=f"sqlite:///{tmp_path / 'studies.db'}", n_trials=1, timeout=None)
    assert f"{name} holds features, not images; pick a space without it: size, dropout, batchnorm, schedule" in str(
        caught.value
    )
    assert not (tmp_path / "studies.db").exists()
    config = tmp_path / "augmented.yaml"
    config.write_text(yaml.safe_dump(TrialConfig(augment_rotate=10.0).to_dict()))
    with pytest.raises(UserError, match=r"augments images \(augment_rotate\), but npz:.* holds features"):
        retrain(config, dataset=name)
    assert not (tmp_path / "augmented.keras").exists()
