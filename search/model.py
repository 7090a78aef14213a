"""The layers: `build_model(config)` turns a `TrialConfig` into an uncompiled Keras model."""

from __future__ import annotations

from search._keras import keras
from search.config import TrialConfig

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10


def build_model(config: TrialConfig) -> keras.Model:
    """The MLP a config describes; a pure function of the config (and of its seed, for the weights).

    Input: raw uint8 MNIST images (28, 28), scaled to [0, 1] inside the model, so a saved model
    takes the dataset's bytes as they are. Augmentation layers act in training only.
    Per hidden layer: [Dropout] -> Dense -> [BatchNorm] -> activation -> [BatchNorm], where the
    Dropout is `input_dropout` before the first Dense and `dropout` before the others, and the
    BatchNorm sits on the side of the activation that `config.batchnorm` names.
    Output: Dense(10) with softmax.
    """
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = _augmentation(config, x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(config.hidden_units, start=1):
        rate = config.input_dropout if i == 1 else config.dropout
        if rate > 0:
            x = keras.layers.Dropout(rate, name=f"dropout_{i}")(x)
        x = _hidden_layer(config, x, i, units)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", kernel_regularizer=_l2(config), name="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _hidden_layer(config: TrialConfig, x: keras.KerasTensor, i: int, units: int) -> keras.KerasTensor:
    constraint = keras.constraints.MaxNorm(config.max_norm, axis=0) if config.max_norm > 0 else None
    x = keras.layers.Dense(
        units,
        # The bias is redundant when a BatchNormalization shift follows directly.
        use_bias=config.batchnorm != "before_activation",
        kernel_regularizer=_l2(config),
        kernel_constraint=constraint,
        name=f"dense_{i}",
    )(x)
    if config.batchnorm == "before_activation":
        x = keras.layers.BatchNormalization(name=f"batchnorm_{i}")(x)
    x = keras.layers.Activation(config.activation, name=f"{config.activation}_{i}")(x)
    if config.batchnorm == "after_activation":
        x = keras.layers.BatchNormalization(name=f"batchnorm_{i}")(x)
    return x


def _augmentation(config: TrialConfig, x: keras.KerasTensor) -> keras.KerasTensor:
    """Random shift, rotation and zoom of the (scaled) images; Keras runs these in training only."""
    layers = []
    if config.augment_translate > 0:
        t = config.augment_translate
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=config.seed, name="shift"))
    if config.augment_rotate > 0:
        turns = config.augment_rotate / 360.0
        layers.append(keras.layers.RandomRotation(turns, fill_mode="constant", seed=config.seed, name="rotate"))
    if config.augment_zoom > 0:
        z = config.augment_zoom
        layers.append(keras.layers.RandomZoom(z, z, fill_mode="constant", seed=config.seed, name="zoom"))
    if not layers:
        return x
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="channel")(x)
    for layer in layers:
        x = layer(x)
    return keras.layers.Reshape(IMAGE_SHAPE, name="unchannel")(x)


def _l2(config: TrialConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(config.l2) if config.l2 > 0 else None
