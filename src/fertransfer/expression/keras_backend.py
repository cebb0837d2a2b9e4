"""keras on the torch backend: the one place that imports it, so the backend is chosen before
keras is first imported, whichever module (a saved model, a layer, the search) asks first."""

from __future__ import annotations

import os


def import_keras():
    """keras and autokeras, with the torch backend chosen before keras is first imported."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was already imported with the {keras.backend.backend()} backend; set KERAS_BACKEND=torch")
    import autokeras as ak

    return keras, ak
