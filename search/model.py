"""The layers: `build_model(config, inputs)` turns a `TrialConfig` into an uncompiled Keras model for the data."""

from __future__ import annotations

from typing import Any

from search._keras import keras, tf
from search.augmentation import augmentation_layers
from search.config import TrialConfig
from search.data import MNIST_INPUTS, Inputs


def build_model(config: TrialConfig, inputs: Inputs = MNIST_INPUTS) -> keras.Model:
    """The MLP a config describes for data of `inputs` (default MNIST's); a pure function of the two (and of
    the config's seed, for the weights).

    Input: the dataset's examples as they are, scaled inside the model, so a saved model takes the
    dataset's bytes as they are: uint8 images (H, W) or (H, W, C) by 1/255, then augmented (in
    training only), then flattened; float features flattened, then normalized by a `Normalization`
    layer holding each feature's mean and variance over the training split (`inputs.mean`, `.variance`).
    Per hidden layer: [Dropout] -> Dense -> [BatchNorm] -> activation -> [BatchNorm], where the
    Dropout is `input_dropout` before the first Dense and `dropout` before the others, and the
    BatchNorm sits on the side of the activation that `config.batchnorm` names.
    Output: Dense(inputs.n_classes) with softmax.

    Raises:
        ValueError: the config augments and the inputs are features (the driver refuses that first).
    """
    if not inputs.images and config.augmentation():
        raise ValueError(f"augmentation ({', '.join(config.augmentation())}) needs images, not features")
    keras.utils.set_random_seed(config.seed)
    first, x = _input_layers(config, inputs)
    for i, units in enumerate(config.hidden_units, start=1):
        rate = config.input_dropout if i == 1 else config.dropout
        if rate > 0:
            x = FastDropout(rate, name=f"dropout_{i}")(x)
        x = _hidden_layer(config, x, i, units)
    outputs = keras.layers.Dense(
        inputs.n_classes, activation="softmax", kernel_regularizer=_l2(config), name="softmax"
    )(x)
    return keras.Model(first, outputs, name="mlp")


def _input_layers(config: TrialConfig, inputs: Inputs) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model's input, and the flat scaled tensor (images: augmented in training) the hidden layers take."""
    if inputs.images:
        first = keras.Input(shape=inputs.shape, dtype="uint8", name="image")
        x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(first)
        return first, keras.layers.Flatten(name="flatten")(augmentation_layers(config, x))
    first = keras.Input(shape=inputs.shape, dtype="float32", name="features")
    x = keras.layers.Flatten(name="flatten")(first)
    return first, keras.layers.Normalization(mean=inputs.mean, variance=inputs.variance, name="normalize")(x)


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


@keras.saving.register_keras_serializable(package="search")
class FastDropout(keras.layers.Layer):
    """Keras's Dropout (inverted: kept units scaled by 1 / (1 - rate), training only), drawn faster.

    Keras draws the mask with TensorFlow's auto-selected random algorithm, which XLA on a CPU
    runs over 20 times slower than Philox (23 ms against 1.0 ms for a 100 x 1024 mask,
    measured): with dropout an epoch took 3-5 times as long. This layer asks for Philox
    (ThreeFry, 0.45 ms under XLA, has no kernel outside XLA).
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        seed = tf.cast(self.seed_generator.next(), "int32")
        keep = tf.random.stateless_uniform(tf.shape(inputs), seed=seed, alg="philox") >= self.rate
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _l2(config: TrialConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(config.l2) if config.l2 > 0 else None
