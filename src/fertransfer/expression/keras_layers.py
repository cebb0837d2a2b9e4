"""Keras layers of the project's AutoKeras models, importable wherever a saved model is loaded.

Importing this module imports keras with the torch backend (`keras_backend.import_keras`).
"""

from __future__ import annotations

from .keras_backend import import_keras

keras, _ = import_keras()


@keras.saving.register_keras_serializable(package="fertransfer")
class RandomShift(keras.layers.Layer):
    """Each image shifted by up to `shift` pixels each way, the border reflected (the CNN's random
    crop, kept at full size); the identity at inference.

    Written with pad, slices and gathers, its output shape declared: in AutoKeras's trials keras's
    RandomTranslation spent about 50 s a trial outside training, its map_coordinates run image by
    image on meta tensors to infer its output (bench/automl_overhead.py), more than a short
    trial's training."""

    def __init__(self, shift: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.shift = int(shift)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or not self.shift:
            return images
        ops, s = keras.ops, self.shift
        batch, height, width, channels = ops.shape(images)
        padded = ops.pad(images, [[0, 0], [s, s], [s, s], [0, 0]], mode="reflect")
        offsets = keras.random.randint((2, batch), 0, 2 * s + 1, dtype="int32", seed=self.seed_generator)
        rows = offsets[0][:, None] + ops.arange(height, dtype="int32")[None, :]  # (batch, height)
        cols = offsets[1][:, None] + ops.arange(width, dtype="int32")[None, :]  # (batch, width)
        rows = ops.broadcast_to(rows[:, :, None, None], (batch, height, width + 2 * s, channels))
        picked = ops.take_along_axis(padded, rows, axis=1)
        cols = ops.broadcast_to(cols[:, None, :, None], (batch, height, width, channels))
        return ops.take_along_axis(picked, cols, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape  # declared, so that building a model never runs `call` symbolically

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "seed": self.seed}
