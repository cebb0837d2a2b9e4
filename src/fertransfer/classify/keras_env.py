"""Keras with the torch backend, chosen before keras is first imported, and the callback that
ends an AutoKeras search at a deadline: what both search spaces (automl.py, automl_space.py)
share, in a module that imports neither."""

from __future__ import annotations

import os
import time


def _keras():
    """keras and autokeras, with the torch backend chosen before keras is first imported."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was already imported with the {keras.backend.backend()} backend; set KERAS_BACKEND=torch")
    import autokeras as ak

    return keras, ak


def deadline_callback(deadline: float, tuner):
    """A callback that stops the running trial at `deadline` (time.monotonic) and lets the
    tuner start no more trials."""
    keras, _ = _keras()

    class Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > deadline:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if time.monotonic() > deadline:
                tuner.oracle.max_trials = len(tuner.oracle.trials)

    return Deadline()
