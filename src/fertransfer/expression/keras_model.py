"""A trained AutoKeras model as an expression classifier: load, predict, save.

Keras runs on the torch backend, chosen before keras is first imported. The search that builds
these models is the classify stage's (`fertransfer.classify.automl`); loading one needs only
this module, so any stage can use an AutoKeras model as its judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import check_tta
from .keras_backend import import_keras


def standardise(images: np.ndarray) -> np.ndarray:
    """Each image to zero mean and unit variance (float32), as the CNN does: brightness and
    contrast differ between sources (FER2013, translated faces, the person's crops)."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / (std + 1.0)


def custom_objects() -> dict:
    """What keras needs to rebuild a searched model: AutoKeras's layers and the fer_cnn space's."""
    _, ak = import_keras()
    from .keras_layers import FusedBatchNorm, RandomShift

    return {**ak.CUSTOM_OBJECTS, "RandomShift": RandomShift, "FusedBatchNorm": FusedBatchNorm}


# How far the ten-crop views move the face: the CNN's corner crops of 44 px from 48 lie 2 px from
# its centre crop each way.
TTA_SHIFT = 2


def test_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of NHWC images averaged at test time: the face (center); and its mirror (flip);
    and (tencrop) the face moved TTA_SHIFT px towards each corner, border reflected, each mirrored
    too: the CNN's ten crops kept at full size, as the fer_cnn block's RandomShift trains."""
    check_tta(tta)
    views = [images]
    if tta == "center":
        return views
    if tta == "tencrop":
        s, (h, w) = TTA_SHIFT, images.shape[1:3]
        padded = np.pad(images, [(0, 0), (s, s), (s, s), (0, 0)], mode="reflect")
        views += [padded[:, r : r + h, c : c + w] for r in (0, 2 * s) for c in (0, 2 * s)]
    return views + [view[:, :, ::-1] for view in views]


@dataclass
class AutoKerasClassifier:
    model: object  # the exported keras.Model
    classes: list[str]
    channels: int
    size: int
    search: dict = field(default_factory=dict)  # the search's settings, kept in model.json
    tta: str = "center"  # the views averaged when predicting (test_views)

    engine = "autokeras"

    def predict_proba(self, images: np.ndarray, tta: str | None = None, batch_size: int = 256) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        views = test_views(standardise(images), tta or self.tta)
        probs = np.mean([np.asarray(self.model.predict(view, batch_size=batch_size, verbose=0)) for view in views],
                        axis=0)
        if probs.ndim == 1 or probs.shape[1] == 1:  # a binary head gives P(class 1) only
            p1 = probs.reshape(-1)
            probs = np.stack([1 - p1, p1], axis=1)
        return probs.astype(np.float32)

    def save(self, folder: Path) -> dict:
        self.model.save(folder / "model.keras")
        return {"file": "model.keras", "config": self.search, "tta": self.tta}

    @classmethod
    def load(cls, folder: Path, meta: dict) -> AutoKerasClassifier:
        keras, _ = import_keras()
        model = keras.models.load_model(folder / meta["file"], custom_objects=custom_objects(), compile=False)
        return cls(model, list(meta["classes"]), meta["channels"], meta["size"], dict(meta.get("config", {})),
                   meta.get("tta", "center"))
