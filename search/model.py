"""The layers: `build_model(config, inputs)` turns a `TrialConfig` into an uncompiled Keras model for the data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from search._keras import keras, tf
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
        return first, keras.layers.Flatten(name="flatten")(_augmentation(config, x))
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


def _augmentation(config: TrialConfig, x: keras.KerasTensor) -> keras.KerasTensor:
    """Random shift, rotation and zoom, then elastic distortion, in training only; each absent when off."""
    if config.augment_translate or config.augment_rotate or config.augment_zoom:
        x = RandomAffine(
            config.augment_translate, config.augment_rotate, config.augment_zoom, seed=config.seed, name="augment"
        )(x)
    if config.augment_elastic_alpha:
        x = ElasticDistortion(
            config.augment_elastic_alpha, config.augment_elastic_sigma, seed=config.seed, name="elastic"
        )(x)
    return x


@keras.saving.register_keras_serializable(package="search")
class RandomAffine(keras.layers.Layer):
    """Shifts, rotates and zooms each image of a (batch, height, width[, channels]) batch by its own random amount.

    Keras's RandomTranslation/RandomRotation/RandomZoom are not XLA-compatible, and one of them
    turns XLA off for the whole model, which makes every epoch about twice as slow on CPU; this
    layer is plain tensor maths, so the training step stays compiled.
    Per image: a shift of up to `translate` of the height and of the width either way, a
    rotation of up to `rotate` degrees either way, and a scale of 1 - `zoom` to 1 + `zoom`
    (above 1 enlarges), all about the image centre. Each output pixel is read from the inverse
    map by bilinear interpolation; pixels that map from outside the image are 0 (background).
    Identity when not training, so validation, evaluation and a saved model never see it.
    """

    def __init__(
        self, translate: float = 0.0, rotate: float = 0.0, zoom: float = 0.0, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.translate, self.rotate, self.zoom, self.seed = translate, rotate, zoom, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return images
        height, width = images.shape[1], images.shape[2]
        batch = keras.ops.shape(images)[:1]

        def draw(limit: float) -> Any:
            return keras.random.uniform(batch, -limit, limit, seed=self.seed_generator)[:, None]

        shift_y, shift_x = draw(self.translate) * height, draw(self.translate) * width
        angle = draw(self.rotate) * (math.pi / 180.0)
        scale = 1.0 + draw(self.zoom)
        # Output pixel -> source pixel: undo the shift, then the rotation and the scale, about the centre.
        centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
        grid_y, grid_x = np.meshgrid(np.arange(height) - centre_y, np.arange(width) - centre_x, indexing="ij")
        dy = grid_y.reshape(1, -1).astype("float32") - shift_y
        dx = grid_x.reshape(1, -1).astype("float32") - shift_x
        cos, sin = keras.ops.cos(angle) / scale, keras.ops.sin(angle) / scale
        source_y = cos * dy - sin * dx + centre_y
        source_x = sin * dy + cos * dx + centre_x
        return _resample(images, source_y, source_x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "translate": self.translate,
            "rotate": self.rotate,
            "zoom": self.zoom,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="search")
class ElasticDistortion(keras.layers.Layer):
    """Elastic distortion of each image of a (batch, height, width[, channels]) batch (Simard et al. 2003).

    Per image, a displacement field: every pixel's (dy, dx) drawn uniform in [-1, 1], smoothed by
    a Gaussian of width `sigma` pixels (normalized, cut at 3 sigma, zeros outside the image),
    scaled by `alpha` pixels; each output pixel is read at its position plus its displacement by
    bilinear interpolation (0 outside the image). A weighted mean of values in [-1, 1] stays in
    it, so no pixel moves more than `alpha` either way. Plain tensor maths with Philox draws (see
    FastDropout), so the training step stays XLA-compiled. Identity when not training.
    """

    def __init__(self, alpha: float = 0.0, sigma: float = 4.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def displacement(self, batch: Any, height: int, width: int) -> Any:
        """A fresh (batch, height, width, 2) field of (dy, dx) in pixels."""
        seed = tf.cast(self.seed_generator.next(), "int32")
        noise = tf.random.stateless_uniform(tf.stack([batch * 2, height, width]), seed, -1.0, 1.0, alg="philox")
        # The separable Gaussian as two small matrix products (rows, then columns): the same sums as
        # a zero-padded convolution, about 100x faster under XLA on a CPU (BENCHMARKS.md "Augmentation").
        smooth = tf.einsum("ij,bjk,lk->bil", self._gaussian(height), noise, self._gaussian(width))
        return self.alpha * tf.transpose(tf.reshape(smooth, tf.stack([2, batch, height, width])), (1, 2, 3, 0))

    def _gaussian(self, size: int) -> Any:
        """(size, size) matrix whose row i holds the normalized kernel centred on pixel i, cut at the image edge."""
        radius = max(1, math.ceil(3 * self.sigma))
        offsets = tf.cast(tf.range(size)[None, :] - tf.range(size)[:, None], "float32")
        weights = tf.exp(-tf.square(offsets) / (2 * self.sigma**2)) * tf.cast(tf.abs(offsets) <= radius, "float32")
        taps = tf.exp(-tf.square(tf.range(-radius, radius + 1, dtype="float32")) / (2 * self.sigma**2))
        return weights / tf.reduce_sum(taps)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training or not self.alpha:
            return images
        height, width = images.shape[1], images.shape[2]
        field = self.displacement(tf.shape(images)[0], height, width)
        grid_y, grid_x = tf.meshgrid(tf.range(height, dtype="float32"), tf.range(width, dtype="float32"), indexing="ij")
        source_y = tf.reshape(grid_y + field[..., 0], (-1, height * width))
        source_x = tf.reshape(grid_x + field[..., 1], (-1, height * width))
        return _resample(images, source_y, source_x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}


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


def _resample(images: Any, source_y: Any, source_x: Any) -> Any:
    """Each image of a (batch, height, width[, channels]) batch read at its own fractional source positions.

    `source_y`, `source_x`: (batch, height*width), one row per image; every channel of an image is
    read at the same positions, so its colours move together.
    """
    height, width = images.shape[1], images.shape[2]
    if len(images.shape) == 3:
        flat = keras.ops.reshape(images, (-1, height * width))
        return keras.ops.reshape(_bilinear(flat, source_y, source_x, height, width), keras.ops.shape(images))
    channels = images.shape[3]
    # One row per channel of each image, in image order; each image's positions repeated for its channels.
    rows = keras.ops.reshape(keras.ops.transpose(images, (0, 3, 1, 2)), (-1, height * width))
    source_y, source_x = (keras.ops.repeat(source, channels, axis=0) for source in (source_y, source_x))
    moved = keras.ops.reshape(_bilinear(rows, source_y, source_x, height, width), (-1, channels, height, width))
    return keras.ops.transpose(moved, (0, 2, 3, 1))


def _bilinear(flat: Any, source_y: Any, source_x: Any, height: int, width: int) -> Any:
    """Rows of `flat` (batch, height*width) read at fractional (source_y, source_x); 0 outside the image."""
    top, left = keras.ops.floor(source_y), keras.ops.floor(source_x)
    fy, fx = source_y - top, source_x - left
    result = 0.0
    for oy, wy in ((0.0, 1.0 - fy), (1.0, fy)):
        for ox, wx in ((0.0, 1.0 - fx), (1.0, fx)):
            y, x = top + oy, left + ox
            inside = (y >= 0) & (y <= height - 1) & (x >= 0) & (x <= width - 1)
            index = keras.ops.clip(y, 0, height - 1) * width + keras.ops.clip(x, 0, width - 1)
            pixel = keras.ops.take_along_axis(flat, keras.ops.cast(index, "int32"), axis=1)
            result = result + keras.ops.where(inside, pixel * wy * wx, 0.0)
    return result


def _l2(config: TrialConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(config.l2) if config.l2 > 0 else None
