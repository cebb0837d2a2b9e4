"""AutoKeras architecture search on Keras 3 with the torch backend.

AutoKeras's ready-made ImageClassifier searches a space that includes ImageNet-pretrained
EfficientNets, whose weights would be downloaded; the search here is the same image
classifier graph (ImageInput -> normalisation -> augmentation -> a conv block ->
ClassificationHead) built as an AutoModel with every block from scratch, so nothing
downloads. Trials live under the stage folder; the best model is exported as `.keras`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fertransfer.devices import resolve_device, use_bf16
from fertransfer.expression.keras_backend import import_keras
from fertransfer.expression.keras_model import AutoKerasClassifier, custom_objects, standardise

from .keras_env import deadline_callback

log = logging.getLogger(__name__)

BLOCKS = ("vanilla", "resnet", "xception")
# The search spaces: fer_cnn, the project's CNN family as a custom block with successive
# halving (automl_space.py); convblock, AutoKeras's own blocks (BLOCKS) with its greedy tuner.
SPACES = ("fer_cnn", "convblock")
FINAL_OPTIMIZERS = ("adam", "sgd")

# Seconds per training image and epoch, validation included as a share: fer_cnn's default trial
# (width 32, depth 4; Keras 3 on torch, fp32, one thread of a 2-core AMD EPYC at load 2.4: 62
# images/s, bench/automl_cost.py, docs/benchmarks.md), and AutoKeras's first ConvBlock (89-133 s per
# FER2013 epoch on one loaded thread, docs/results.md). They size the smallest time budget that
# holds one trial; a wider trial costs more (width 48: 31 ms), a narrower one less (16, depth 3: 5 ms).
SECONDS_PER_TRIAL_IMAGE = {"fer_cnn": 0.018, "convblock": 0.005}


def smallest_budget_minutes(space: str, epochs: int, trial_images: int, search_share: float) -> float:
    """The budget whose search share holds one trial of `epochs` epochs on `trial_images` images
    (an estimate from SECONDS_PER_TRIAL_IMAGE)."""
    share = search_share if space == "fer_cnn" else 1.0
    return epochs * trial_images * SECONDS_PER_TRIAL_IMAGE[space] / 60 / share


@dataclass
class AutoKerasConfig:
    max_trials: int = 3
    epochs: int = 10  # per trial; each trial also stops early on validation loss
    time_budget_minutes: float = 0.0  # 0 = no limit; ends the running trial and the search
    block: str = "vanilla"  # convblock space: vanilla (ConvBlock), resnet or xception, all from scratch
    batch_size: int = 64
    space: str = "fer_cnn"  # fer_cnn (the CNN family, successive halving) or convblock (AutoKeras's greedy)
    trial_images: int = 4000  # fer_cnn: training images per trial, stratified (0: all)
    search_share: float = 0.35  # fer_cnn: share of the time budget for the trials; the rest retrains the best
    final_epochs: int = 30  # fer_cnn: epochs of the best configuration's run on all images (0: keep the trial)
    final_min_epochs: int = 10  # fer_cnn: the final run's configuration must afford this many epochs (0: any)
    fixed: dict = field(default_factory=dict)  # fer_cnn: hyperparameters held at a value, not searched
    bf16: str = "auto"  # Keras's mixed_bfloat16 policy while training: auto (GPU, or a CPU with native bf16), on, off
    final_optimizer: str = "adam"  # fer_cnn: adam (the trial's rate) or sgd (the CNN's: Nesterov, final_lr, weight decay)
    final_lr: float = 0.05  # fer_cnn, sgd: the final run's peak learning rate
    final_weight_decay: float = 5e-4  # fer_cnn, sgd: as torch's SGD applies it (an L2 term in the gradient)
    final_ema: float = 0.0  # fer_cnn: decay per step of the final run's weight average (the CNN's); 0 = off
    tta: str = "center"  # the model's views averaged when predicting: center, flip or tencrop


@dataclass
class SearchResult:
    classifier: AutoKerasClassifier
    history: list[dict]  # per epoch of the model kept (fer_cnn: its final run; convblock: the search's last fit)
    seconds: float
    info: dict  # the space, every trial (hyperparameters, epochs, val accuracy, seconds), what was kept


def train_autokeras(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: list[str],
    config: AutoKerasConfig,
    work_dir: Path,
    seed: int = 0,
) -> SearchResult:
    """Search the configured space, keep the model best on validation."""
    if config.space not in SPACES:
        raise ValueError(f"search space must be one of {', '.join(SPACES)}, got {config.space!r}")
    if config.block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {config.block!r}")
    if config.final_optimizer not in FINAL_OPTIMIZERS:
        raise ValueError(f"final_optimizer must be one of {', '.join(FINAL_OPTIMIZERS)}, got {config.final_optimizer!r}")
    keras, ak = import_keras()
    keras.utils.set_random_seed(seed)
    t0 = time.monotonic()
    eye = np.eye(len(classes), dtype=np.float32)
    x_train, y_train = standardise(train_images), eye[train_labels]
    x_val, y_val = standardise(val_images), eye[val_labels]
    verbose = 1 if sys.stdout.isatty() else 2  # a live progress bar in a terminal; one line per epoch in logs
    bf16 = use_bf16(config.bf16, resolve_device("auto"))  # where Keras's torch backend runs: CUDA if any
    policy = keras.config.dtype_policy()
    if bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        if config.space == "fer_cnn":
            from .automl_space import search_fer_cnn

            model, rows, info = search_fer_cnn(x_train, y_train, x_val, y_val, len(classes), config, work_dir, seed,
                                               verbose)
        else:
            model, rows, info = _search_convblock(x_train, y_train, x_val, y_val, len(classes), config, work_dir,
                                                  seed, verbose)
    finally:
        keras.config.set_dtype_policy(policy)
    info["precision"] = trained_precision(model)  # as the kept model computed, read from its layers
    if bf16:
        model = as_float32(model)
    classifier = AutoKerasClassifier(model, list(classes), train_images.shape[3], train_images.shape[1],
                                     asdict(config), config.tta)
    return SearchResult(classifier, rows, time.monotonic() - t0, info)


def trained_precision(model) -> str:
    """mixed_bfloat16 if any layer of `model` computes under that policy, else float32."""
    policies = {layer.dtype_policy.name for layer in model.layers}
    return "mixed_bfloat16" if "mixed_bfloat16" in policies else "float32"


def as_float32(model):
    """The same network and weights computing in float32. A model trained under mixed_bfloat16 keeps
    its float32 weights but would compute in bf16 wherever it is loaded, and a CPU without native
    bf16 (most laptops, for the webcam page) emulates that many times slower."""
    import json

    keras, _ = import_keras()
    # every layer's dtype policy is a serialized name: rename it, rebuild, take the weights over
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)).replace('"mixed_bfloat16"',
                                                                                         '"float32"'))
    copy = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects())
    copy.set_weights(model.get_weights())
    return copy


def _search_convblock(x_train, y_train, x_val, y_val, num_classes: int, config: AutoKerasConfig, work_dir: Path,
                      seed: int, verbose: int):
    """AutoKeras's image classifier graph with its own block, greedy tuner; (model, history, info)."""
    keras, ak = import_keras()
    from .automl_space import Greedy, trial_recorder, trial_rows

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
    outputs = ak.ClassificationHead(num_classes=num_classes, multi_label=False)(x)
    search = ak.AutoModel(
        inputs=inputs, outputs=outputs, max_trials=config.max_trials, directory=str(work_dir),
        project_name="search", overwrite=True, seed=seed, tuner=Greedy,
    )
    # With any callback but no EarlyStopping, AutoKeras 3.0.0 refits the best model after the
    # search and crashes ('list' object has no attribute 'on_batch_end': its
    # _remove_early_stopping nests the list). An EarlyStopping that never fires (patience =
    # epochs) skips that refit; the best trial's model, chosen on validation data, is kept.
    records: dict = {}
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.epochs + 1),
                 trial_recorder(search.tuner, records)]
    if config.time_budget_minutes > 0:
        callbacks.append(deadline_callback(t0 + config.time_budget_minutes * 60, search.tuner))
    search.fit(x_train, y_train, epochs=config.epochs, batch_size=config.batch_size,
               validation_data=(x_val, y_val), callbacks=callbacks, verbose=verbose)
    model = search.export_model()
    trials = trial_rows(search.tuner, records, space=None)
    best = search.tuner.oracle.get_best_trials(1)
    best_id = best[0].trial_id if best else None
    # The history of the kept trial, recorded epoch by epoch (also when the budget cut it short)
    rows = next((t["history"] for t in trials if t["trial"] == best_id), [])
    info = {"space": "convblock", "block": config.block, "best_trial": best_id, "kept": "trial",
            "search_seconds": round(time.monotonic() - t0, 1), "trials": trials}
    return model, rows, info


# --- the search in the report -------------------------------------------------------------

TRIAL_COLUMNS_LEFT_OUT = ("history",)


def trial_table(trials: list[dict]) -> dict[str, dict]:
    """The trials as {trial id: row} with the same scalar columns in every row (the manifest's
    table; report.html renders it as a grid)."""
    return {f"trial {t['trial']}": {k: ("" if v is None else v) for k, v in t.items()
                                    if k not in TRIAL_COLUMNS_LEFT_OUT and k != "trial"} for t in trials}


def trial_markdown(trials: list[dict]) -> str:
    """The trials as a Markdown table, for report.md."""
    table = trial_table(trials)
    if not table:
        return ""
    columns = list(next(iter(table.values())))
    lines = ["| trial | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, row in table.items():
        lines.append(f"| {name.split()[-1]} | " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot_search(trials: list[dict], path: Path, title: str) -> None:
    """Val accuracy of every trial against the search's elapsed time, marked by its epochs; a line
    joins a continued trial to its parent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ends, elapsed = {}, 0.0
    for t in trials:
        elapsed += float(t.get("seconds") or 0)
        ends[t["trial"]] = (elapsed / 60, t["val_acc"])
    scored = [t for t in trials if t["val_acc"] is not None]
    epochs = sorted({t["epochs_total"] for t in scored})
    for i, n in enumerate(epochs):
        points = [ends[t["trial"]] for t in scored if t["epochs_total"] == n]
        ax.scatter(*zip(*points), color=f"C{i}", label=f"{n} epoch(s)", zorder=3)
    for t in scored:
        parent = ends.get(t.get("continues") or "")
        if parent and parent[1] is not None:
            ax.plot([parent[0], ends[t["trial"]][0]], [parent[1], t["val_acc"]], color="#999", lw=0.8, zorder=2)
    ax.set_xlabel("search time (min)")
    ax.set_ylabel("val accuracy (best epoch)")
    ax.set_title(title)
    if epochs:
        ax.legend(fontsize=8, title="trial length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
