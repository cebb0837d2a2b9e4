"""Keras layers of the project's AutoKeras models, importable wherever a saved model is loaded.

Importing this module imports keras with the torch backend (`keras_backend.import_keras`).
"""

from __future__ import annotations

import torch

from .keras_backend import import_keras

keras, _ = import_keras()


@keras.saving.register_keras_serializable(package="fertransfer")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """Keras's BatchNormalization computed by torch's fused kernel (channels last; the weights,
    running statistics and config are BatchNormalization's).

    On the torch backend Keras writes batch norm as separate means, powers, products and casts:
    they took about as long as the convolutions, and this layer trains the fer_cnn space's
    models 1.7x faster in bf16 on two cores (bench/automl_cost.py --fused, docs/benchmarks.md).
    torch updates the running variance with the unbiased batch variance, Keras with the biased
    one: a difference of one part in the batch's pixels."""

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.axis not in (-1, len(inputs.shape) - 1):
            return super().call(inputs, training=training, mask=mask)
        channels_first = torch.movedim(inputs, -1, 1)  # a view: channels-last memory, as the convolutions keep it
        outputs = torch.nn.functional.batch_norm(
            channels_first, self.moving_mean.value, self.moving_variance.value,
            self.gamma.value if self.scale else None, self.beta.value if self.center else None,
            training=bool(training and self.trainable), momentum=1.0 - self.momentum, eps=self.epsilon)
        return torch.movedim(outputs, 1, -1)


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
