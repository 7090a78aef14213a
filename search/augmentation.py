"""Augmentation layers: random affine maps and elastic distortions, XLA-compatible, in training only.

Keras's own image layers turn XLA off for the whole model (about twice as slow an epoch on a
CPU), so these are plain tensor maths: a per-image map from each output pixel to a fractional
source position, read by bilinear interpolation (`_resample`). `search.model` puts them between
the input's scaling and the flattening.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from search._keras import keras, tf
from search.config import TrialConfig


def augmentation_layers(config: TrialConfig, x: keras.KerasTensor) -> keras.KerasTensor:
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
    `search.model.FastDropout`), so the training step stays XLA-compiled. Identity when not training.
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
