"""AutoKeras architecture search on Keras 3 with the torch backend.

AutoKeras's ready-made ImageClassifier searches a space that includes ImageNet-pretrained
EfficientNets, whose weights would be downloaded; the search here is the same image
classifier graph (ImageInput -> normalisation -> augmentation -> a conv block ->
ClassificationHead) built as an AutoModel with every block from scratch, so nothing
downloads. Trials live under the stage folder; the best model is exported as `.keras`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BLOCKS = ("vanilla", "resnet", "xception")


def standardise(images: np.ndarray) -> np.ndarray:
    """Each image to zero mean and unit variance (float32), as the CNN engine does: brightness
    and contrast differ between sources (FER2013, translated faces, the person's crops)."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / (std + 1.0)


def _keras():
    """keras and autokeras, with the torch backend chosen before keras is first imported."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was already imported with the {keras.backend.backend()} backend; set KERAS_BACKEND=torch")
    import autokeras as ak

    return keras, ak


@dataclass
class AutoKerasConfig:
    max_trials: int = 3
    epochs: int = 10  # per trial; each trial also stops early on validation loss
    time_budget_minutes: float = 0.0  # 0 = no limit; ends the running trial and the search
    block: str = "vanilla"  # vanilla (ConvBlock), resnet or xception, all from scratch
    batch_size: int = 64


@dataclass
class AutoKerasClassifier:
    model: object  # the exported keras.Model
    classes: list[str]
    channels: int
    size: int
    config: AutoKerasConfig

    engine = "autokeras"

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        probs = np.asarray(self.model.predict(standardise(images), batch_size=batch_size, verbose=0))
        if probs.ndim == 1 or probs.shape[1] == 1:  # a binary head gives P(class 1) only
            p1 = probs.reshape(-1)
            probs = np.stack([1 - p1, p1], axis=1)
        return probs.astype(np.float32)

    def save(self, folder: Path) -> dict:
        self.model.save(folder / "model.keras")
        return {"file": "model.keras", "config": asdict(self.config)}

    @classmethod
    def load(cls, folder: Path, meta: dict) -> AutoKerasClassifier:
        keras, ak = _keras()
        model = keras.models.load_model(folder / meta["file"], custom_objects=ak.CUSTOM_OBJECTS, compile=False)
        return cls(model, list(meta["classes"]), meta["channels"], meta["size"], AutoKerasConfig(**meta["config"]))


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


def train_autokeras(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: list[str],
    config: AutoKerasConfig,
    work_dir: Path,
    seed: int = 0,
) -> tuple[AutoKerasClassifier, list[dict], float]:
    """Search, keep the trial best on validation; returns (classifier, history of the best, seconds)."""
    if config.block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {config.block!r}")
    keras, ak = _keras()
    keras.utils.set_random_seed(seed)
    t0 = time.monotonic()
    inputs = ak.ImageInput()
    x = ak.Normalization()(inputs)
    x = ak.ImageAugmentation(horizontal_flip=True, vertical_flip=False)(x)
    if config.block == "vanilla":
        x = ak.ConvBlock()(x)
    elif config.block == "resnet":
        x = ak.ResNetBlock(pretrained=False)(x)
    else:
        x = ak.XceptionBlock(pretrained=False)(x)
    outputs = ak.ClassificationHead(num_classes=len(classes), multi_label=False)(x)
    search = ak.AutoModel(
        inputs=inputs, outputs=outputs, max_trials=config.max_trials, directory=str(work_dir),
        project_name="search", overwrite=True, seed=seed, tuner="greedy",
    )
    eye = np.eye(len(classes), dtype=np.float32)
    keras, _ = _keras()
    # With any callback but no EarlyStopping, AutoKeras 3.0.0 refits the best model after the
    # search and crashes ('list' object has no attribute 'on_batch_end': its
    # _remove_early_stopping nests the list). An EarlyStopping that never fires (patience =
    # epochs) skips that refit; the best trial's model, chosen on validation data, is kept.
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.epochs + 1)]
    if config.time_budget_minutes > 0:
        callbacks.append(deadline_callback(t0 + config.time_budget_minutes * 60, search.tuner))
    history = search.fit(
        standardise(train_images), eye[train_labels], epochs=config.epochs, batch_size=config.batch_size,
        validation_data=(standardise(val_images), eye[val_labels]), callbacks=callbacks,
        # A live progress bar in a terminal; one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )
    model = search.export_model()
    rows = []
    h = getattr(history, "history", {}) or {}
    for i in range(len(h.get("loss", []))):
        rows.append({"epoch": i + 1, "train_loss": h["loss"][i], "train_acc": h.get("accuracy", [np.nan] * (i + 1))[i],
                     "val_loss": h.get("val_loss", [np.nan] * (i + 1))[i],
                     "val_acc": h.get("val_accuracy", [np.nan] * (i + 1))[i]})
    classifier = AutoKerasClassifier(model, list(classes), train_images.shape[3], train_images.shape[1], config)
    return classifier, rows, time.monotonic() - t0
