"""The callback that ends an AutoKeras search at a deadline: what both search spaces (automl.py,
automl_space.py) share, in a module that imports neither."""

from __future__ import annotations

import time

from fertransfer.expression.keras_backend import import_keras


def deadline_callback(deadline: float, tuner):
    """A callback that stops the running trial at `deadline` (time.monotonic) and lets the
    tuner start no more trials."""
    keras, _ = import_keras()

    class Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > deadline:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if time.monotonic() > deadline:
                tuner.oracle.max_trials = len(tuner.oracle.trials)

    return Deadline()
