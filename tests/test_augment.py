"""Augmentation (search/augmentation.py) and max-norm, on real MNIST images and real training."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from search.augmentation import ElasticDistortion, RandomAffine
from search.config import TrialConfig
from search.data import Dataset
from search.model import build_model
from search.train import STEPS_PER_EXECUTION, train

SMALL = TrialConfig(hidden_units=(32, 16), epochs=1)
AUGMENTED = SMALL.replace(augment_translate=0.1, augment_rotate=15.0, augment_zoom=0.1)
SIDE = 28


def _numpy(tensor: object) -> np.ndarray:
    return keras.ops.convert_to_numpy(tensor)


def _augment(config: TrialConfig, images: np.ndarray) -> np.ndarray:
    """`images` (float, 0-1) through the augmentation layer of `config`'s model, in training mode."""
    return _numpy(build_model(config).get_layer("augment")(images, training=True))


def _moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image: pixel mass, centroid row, centroid column, RMS distance of the mass from its centroid."""
    rows, cols = np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij")
    mass = images.sum(axis=(1, 2))
    cy = (images * rows).sum(axis=(1, 2)) / mass
    cx = (images * cols).sum(axis=(1, 2)) / mass
    spread = (images * ((rows - cy[:, None, None]) ** 2 + (cols - cx[:, None, None]) ** 2)).sum(axis=(1, 2)) / mass
    return mass, cy, cx, np.sqrt(spread)


@pytest.fixture(scope="module")
def images(mnist: Dataset) -> np.ndarray:
    return mnist.x_val[:64].astype("float32") / 255.0


def test_no_augmentation_layer_when_all_three_are_zero() -> None:
    assert not any(isinstance(layer, RandomAffine) for layer in build_model(SMALL).layers)
    for field in ("augment_translate", "augment_rotate", "augment_zoom"):
        layer = build_model(SMALL.replace(**{field: 0.1})).get_layer("augment")
        assert (layer.translate, layer.rotate, layer.zoom) == tuple(
            0.1 if name == field else 0.0 for name in ("augment_translate", "augment_rotate", "augment_zoom")
        )


def test_training_batches_change_and_inference_batches_do_not(mnist: Dataset) -> None:
    batch = mnist.x_val[:64]
    augmented, plain = build_model(AUGMENTED), build_model(SMALL)
    plain.set_weights(augmented.get_weights())

    inference = _numpy(augmented(batch, training=False))
    np.testing.assert_array_equal(inference, _numpy(augmented(batch, training=False)))
    # The same weights without the layer: inference does not see augmentation at all.
    np.testing.assert_allclose(inference, _numpy(plain(batch, training=False)), atol=1e-6)

    first, second = _numpy(augmented(batch, training=True)), _numpy(augmented(batch, training=True))
    assert np.abs(first - inference).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3, "every training call must draw new transformations"


@pytest.mark.parametrize("layer", [RandomAffine, ElasticDistortion])
def test_colour_channels_move_together_as_a_grey_image_would(images: np.ndarray, layer: type) -> None:
    grey = images[:8]
    colour = np.stack([grey, grey * 0.5, 1.0 - grey], axis=-1)  # (8, 28, 28, 3)
    settings = (0.1, 15.0, 0.1) if layer is RandomAffine else (16.0, 4.0)
    moved_grey = _numpy(layer(*settings, seed=5)(grey, training=True))  # two layers, the same draws
    moved = _numpy(layer(*settings, seed=5)(colour, training=True))
    assert moved.shape == colour.shape
    assert not np.allclose(moved_grey, grey, atol=1e-3)
    np.testing.assert_allclose(moved[..., 0], moved_grey, atol=1e-5)
    np.testing.assert_allclose(moved[..., 1], moved_grey * 0.5, atol=1e-5)
    # Bilinear reads of 1 - x are 1 - the reads of x inside the image; outside it both read 0.
    inside = _numpy(layer(*settings, seed=5)(np.ones_like(grey), training=True))
    np.testing.assert_allclose(moved[..., 2], inside - moved_grey, atol=1e-5)


def test_translate_alone_shifts_each_image(images: np.ndarray) -> None:
    limit = 0.1 * SIDE
    mass, cy, cx, spread = _moments(images)
    mass2, cy2, cx2, spread2 = _moments(_augment(SMALL.replace(augment_translate=0.1), images))
    # Bilinear resampling of a shift moves the mass without adding any; only a digit pushed past
    # the border loses some, and what stays inside keeps its shape.
    kept = np.abs(mass2 / mass - 1) < 0.01
    assert (mass2 <= mass * 1.001).all() and kept.mean() > 0.9
    np.testing.assert_allclose(spread2[kept], spread[kept], rtol=0.02)
    dy, dx = cy2 - cy, cx2 - cx
    assert np.abs(dy).max() <= limit + 0.1 and np.abs(dx).max() <= limit + 0.1
    # Drawn uniformly from [-2.8, 2.8] px: most images move by more than a tenth of a pixel, both ways.
    assert np.mean(np.hypot(dy, dx) > 0.1) > 0.9
    assert dy.min() < -1 < 1 < dy.max() and dx.min() < -1 < 1 < dx.max()


def test_rotate_alone_turns_an_off_centre_blob_about_the_centre() -> None:
    image = np.zeros((64, SIDE, SIDE), "float32")
    image[:, 5:9, 18:22] = 1.0  # a square up and to the right of the centre (13.5, 13.5)
    mass, cy, cx, _ = _moments(image)
    mass2, cy2, cx2, _ = _moments(_augment(SMALL.replace(augment_rotate=20.0), image))
    np.testing.assert_allclose(mass2, mass, rtol=0.03)
    centre = (SIDE - 1) / 2
    np.testing.assert_allclose(np.hypot(cy2 - centre, cx2 - centre), np.hypot(cy - centre, cx - centre), rtol=0.02)
    turned = np.degrees(np.arctan2(cy2 - centre, cx2 - centre) - np.arctan2(cy - centre, cx - centre))
    assert np.abs(turned).max() <= 20.5
    assert turned.min() < -5 < 5 < turned.max()


def test_zoom_alone_scales_the_spread(images: np.ndarray) -> None:
    _, cy, cx, spread = _moments(images)
    _, cy2, cx2, spread2 = _moments(_augment(SMALL.replace(augment_zoom=0.15), images))
    ratio = spread2 / spread
    assert ratio.min() >= 0.85 - 0.02 and ratio.max() <= 1.15 + 0.02
    assert ratio.min() < 0.95 and ratio.max() > 1.05
    # About the image centre: digits (centred by their mass) barely move.
    assert np.abs(cy2 - cy).max() < 1.0 and np.abs(cx2 - cx).max() < 1.0


def test_augmented_model_compiles_with_xla_and_its_saved_copy_predicts_as_it_does(
    tiny_mnist: Dataset, tmp_path: Path
) -> None:
    model = build_model(AUGMENTED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            jit_compile=True,
            steps_per_execution=STEPS_PER_EXECUTION,
        )
    assert model.jit_compile is True
    assert not [w for w in caught if "jit_compile" in str(w.message)]
    validation = (tiny_mnist.x_val, tiny_mnist.y_val)
    history = model.fit(tiny_mnist.x_train, tiny_mnist.y_train, batch_size=100, epochs=1, verbose=0)
    # Validation is not augmented: two evaluations agree, and they agree with the model without the layer.
    loss = model.evaluate(*validation, verbose=0)
    assert loss == pytest.approx(model.evaluate(*validation, verbose=0), rel=1e-6)
    plain = build_model(SMALL)
    plain.set_weights(model.get_weights())
    plain.compile(loss="sparse_categorical_crossentropy")
    assert loss == pytest.approx(plain.evaluate(*validation, verbose=0), rel=1e-5)
    assert np.isfinite(history.history["loss"][0])

    path = tmp_path / "augmented.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("augment"), RandomAffine)
    once, twice = loaded.predict(tiny_mnist.x_val, verbose=0), loaded.predict(tiny_mnist.x_val, verbose=0)
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_allclose(once, model.predict(tiny_mnist.x_val, verbose=0), atol=1e-6)


def _kernel_column_norms(path: Path) -> list[np.ndarray]:
    """The L2 norm of each hidden unit's incoming weights, per hidden Dense layer of a saved model."""
    model = keras.models.load_model(path)
    hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]
    return [np.linalg.norm(layer.get_weights()[0], axis=0) for layer in hidden]


def test_max_norm_holds_after_training(tiny_mnist: Dataset, tmp_path: Path) -> None:
    # A high rate drives the kernels far beyond norm 1 unless the constraint holds them.
    loud = SMALL.replace(learning_rate=0.05, epochs=2)
    train(loud.replace(max_norm=1.0), tiny_mnist, save_model=tmp_path / "capped.keras")
    train(loud, tiny_mnist, save_model=tmp_path / "free.keras")
    for norms in _kernel_column_norms(tmp_path / "capped.keras"):
        assert norms.max() <= 1.0 + 1e-5
    assert max(norms.max() for norms in _kernel_column_norms(tmp_path / "free.keras")) > 1.5
