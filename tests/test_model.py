"""Tests for search/model.py: parameter count, layer order, regularizers, augmentation, input dtype."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from search.config import TrialConfig
from search.data import Dataset
from search.model import FastDropout, build_model

SMALL = TrialConfig(hidden_units=(32, 16, 8))
AUGMENTED = SMALL.replace(augment_translate=0.15, augment_rotate=15.0, augment_zoom=0.15)


def _kinds(model: keras.Model) -> list[str]:
    """The layers after the input, as short type names, in graph order."""
    return [type(layer).__name__ for layer in model.layers[1:]]


def _trainable_params(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _dense(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_reference_model_has_the_notes_parameter_count() -> None:
    # 784*512+512 + 512*512+512 + 512*256+256 + 256*256+256 + 256*128+128 + 128*128+128 + 128*8+8 + 8*10+10
    model = build_model(TrialConfig())
    assert _trainable_params(model) == 912_226
    assert [layer.units for layer in _dense(model)] == [512, 512, 256, 256, 128, 128, 8, 10]


def test_plain_layer_order() -> None:
    model = build_model(SMALL)
    assert _kinds(model) == [
        "Rescaling",
        "Flatten",
        *["Dense", "Activation"] * 3,
        "Dense",
    ]
    assert model.layers[-1].name == "softmax"
    assert all(layer.use_bias for layer in _dense(model))


def test_dropout_goes_before_each_hidden_dense_and_not_before_the_output() -> None:
    model = build_model(SMALL.replace(input_dropout=0.2, dropout=0.4))
    assert _kinds(model) == [
        "Rescaling",
        "Flatten",
        *["FastDropout", "Dense", "Activation"] * 3,
        "Dense",
    ]
    rates = [layer.rate for layer in model.layers if isinstance(layer, FastDropout)]
    assert rates == pytest.approx([0.2, 0.4, 0.4])
    names = [layer.name for layer in model.layers]
    assert names.index("dropout_1") == names.index("dense_1") - 1


@pytest.mark.parametrize(
    ("input_dropout", "dropout", "expected"),
    [(0.2, 0.0, ["dropout_1"]), (0.0, 0.3, ["dropout_2", "dropout_3"])],
)
def test_each_dropout_rate_is_independent(input_dropout: float, dropout: float, expected: list[str]) -> None:
    model = build_model(SMALL.replace(input_dropout=input_dropout, dropout=dropout))
    assert [layer.name for layer in model.layers if isinstance(layer, FastDropout)] == expected


def test_batchnorm_before_activation_drops_the_dense_bias() -> None:
    model = build_model(SMALL.replace(batchnorm="before_activation"))
    assert _kinds(model) == [
        "Rescaling",
        "Flatten",
        *["Dense", "BatchNormalization", "Activation"] * 3,
        "Dense",
    ]
    hidden, output = _dense(model)[:-1], _dense(model)[-1]
    assert [layer.use_bias for layer in hidden] == [False, False, False]
    assert output.use_bias


def test_batchnorm_after_activation_keeps_the_bias() -> None:
    model = build_model(SMALL.replace(batchnorm="after_activation"))
    assert _kinds(model) == [
        "Rescaling",
        "Flatten",
        *["Dense", "Activation", "BatchNormalization"] * 3,
        "Dense",
    ]
    assert all(layer.use_bias for layer in _dense(model))


def test_activation_is_the_configured_one() -> None:
    model = build_model(SMALL.replace(activation="tanh"))
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert [layer.name for layer in activations] == ["tanh_1", "tanh_2", "tanh_3"]
    assert model.layers[-1].activation is keras.activations.softmax


def test_l2_regularizes_every_dense_kernel() -> None:
    model = build_model(SMALL.replace(l2=1e-4))
    for layer in _dense(model):
        assert isinstance(layer.kernel_regularizer, keras.regularizers.L2), layer.name
        assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)
    assert len(model.losses) == 4
    assert all(layer.kernel_regularizer is None for layer in _dense(build_model(SMALL)))
    assert build_model(SMALL).losses == []


def test_max_norm_constrains_every_hidden_kernel() -> None:
    model = build_model(SMALL.replace(max_norm=3.0))
    for layer in _dense(model)[:-1]:
        assert isinstance(layer.kernel_constraint, keras.constraints.MaxNorm), layer.name
        assert layer.kernel_constraint.max_value == 3.0
        assert layer.kernel_constraint.axis == 0
    assert all(layer.kernel_constraint is None for layer in _dense(build_model(SMALL)))


def test_augmentation_layer_only_when_configured() -> None:
    assert _kinds(build_model(AUGMENTED))[:3] == ["Rescaling", "RandomAffine", "Flatten"]
    assert _kinds(build_model(SMALL.replace(augment_zoom=0.1)))[:3] == ["Rescaling", "RandomAffine", "Flatten"]
    assert "RandomAffine" not in _kinds(build_model(SMALL))


def test_augmentation_is_identity_at_inference_and_random_in_training(tiny_mnist: Dataset) -> None:
    images = tiny_mnist.x_val[:64]
    augmented, plain = build_model(AUGMENTED), build_model(SMALL)
    for layer in _dense(plain):
        layer.set_weights(augmented.get_layer(layer.name).get_weights())

    first = keras.ops.convert_to_numpy(augmented(images, training=False))
    second = keras.ops.convert_to_numpy(augmented(images, training=False))
    np.testing.assert_array_equal(first, second)
    # Same weights without augmentation layers: inference must not see them at all.
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(plain(images, training=False)), atol=1e-6)

    trained = keras.ops.convert_to_numpy(augmented(images, training=True))
    assert np.abs(trained - first).max() > 1e-3
    # The unaugmented model has no randomness: training mode gives the inference output.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(images, training=True)), first, atol=1e-6)


def test_model_takes_raw_uint8_images(tiny_mnist: Dataset) -> None:
    model = build_model(SMALL)
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.inputs[0].shape) == (None, 28, 28)
    images = tiny_mnist.x_val[:16]
    assert images.dtype == np.uint8
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # Scaling is inside the model: feeding bytes and feeding the same pixels as float agree.
    as_float = model.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities, as_float, atol=1e-6)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    first, again = build_model(SMALL).get_weights(), build_model(SMALL).get_weights()
    other = build_model(SMALL.replace(seed=1)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_fast_dropout_zeroes_about_rate_of_the_units_scales_the_rest_and_only_in_training() -> None:
    layer = FastDropout(0.3, seed=1)
    ones = np.ones((200, 500), "float32")
    dropped = np.asarray(layer(ones, training=True))
    assert abs((dropped == 0).mean() - 0.3) < 0.01
    assert np.allclose(dropped[dropped != 0], 1 / 0.7)  # the expected sum stays what it was
    assert not np.array_equal(np.asarray(layer(ones, training=True)), dropped)  # a new mask every step
    assert np.array_equal(np.asarray(layer(ones, training=False)), ones)
