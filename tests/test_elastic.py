"""Elastic distortions (search/augmentation.py's ElasticDistortion): the transform's defining properties."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from search._keras import tf
from search.augmentation import ElasticDistortion
from search.config import TrialConfig
from search.data import Dataset
from search.model import build_model
from search.train import STEPS_PER_EXECUTION

SMALL = TrialConfig(hidden_units=(32,), epochs=1)
ELASTIC = SMALL.replace(augment_elastic_alpha=34.0, augment_elastic_sigma=4.0)
SIDE = 28


def _field(alpha: float, sigma: float, batch: int = 64) -> np.ndarray:
    return ElasticDistortion(alpha, sigma, seed=0).displacement(tf.constant(batch), SIDE, SIDE).numpy()


def test_alpha_zero_is_the_identity_and_adds_no_layer(mnist: Dataset) -> None:
    images = mnist.x_val[:16].astype("float32") / 255.0
    out = ElasticDistortion(0.0, 4.0, seed=0)(images, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), images)
    assert not any(isinstance(layer, ElasticDistortion) for layer in build_model(SMALL).layers)
    assert isinstance(build_model(ELASTIC).get_layer("elastic"), ElasticDistortion)


@pytest.mark.parametrize("sigma", [4.0, 6.0])
def test_displacement_is_bounded_by_alpha_and_smooth(sigma: float) -> None:
    field = _field(34.0, sigma)
    assert field.shape == (64, SIDE, SIDE, 2)
    assert np.abs(field).max() <= 34.0 + 1e-4
    assert field.std() > 0.3, "the field must move pixels, not vanish"
    # Neighbouring pixels move nearly together; independent draws (other images, same pixel) do not.
    neighbours = np.abs(np.diff(field, axis=1)).mean() + np.abs(np.diff(field, axis=2)).mean()
    independent = 2 * np.abs(field - np.roll(field, 1, axis=0)).mean()
    assert neighbours < 0.2 * independent
    # A wider Gaussian gives a smoother field: the smoothness depends on sigma, as it should.
    assert np.abs(np.diff(_field(34.0, 2 * sigma), axis=2)).mean() < np.abs(np.diff(field, axis=2)).mean()


def test_compiles_with_xla_trains_a_step_and_is_off_at_inference(tiny_mnist: Dataset) -> None:
    model = build_model(ELASTIC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=True,
            steps_per_execution=STEPS_PER_EXECUTION,
        )
    labels = tiny_mnist.y_train.copy()
    history = model.fit(tiny_mnist.x_train, labels, batch_size=100, epochs=1, verbose=0).history
    assert model.jit_compile is True and not [w for w in caught if "jit_compile" in str(w.message)]
    # Labels untouched: the layer sees images only, and the distorted digits still match their labels
    # well enough to learn from in one epoch of 20 steps (chance is 0.1).
    np.testing.assert_array_equal(labels, tiny_mnist.y_train)
    assert np.isfinite(history["loss"][0]) and history["accuracy"][0] > 0.2
    # Inference: exactly the model without the layer, with the same weights.
    plain = build_model(SMALL)
    plain.set_weights(model.get_weights())
    plain.compile(loss="sparse_categorical_crossentropy", jit_compile=True, steps_per_execution=STEPS_PER_EXECUTION)
    predicted = model.predict(tiny_mnist.x_val, verbose=0)
    np.testing.assert_array_equal(predicted, plain.predict(tiny_mnist.x_val, verbose=0))
    batch = tiny_mnist.x_val[:32]
    inference = keras.ops.convert_to_numpy(model(batch, training=False))
    np.testing.assert_array_equal(inference, keras.ops.convert_to_numpy(plain(batch, training=False)))
    assert np.abs(keras.ops.convert_to_numpy(model(batch, training=True)) - inference).max() > 1e-3
