"""The `fer_cnn` AutoKeras search space: the project's CNN family as an AutoKeras block.

`FerCnnBlock` builds the architecture of expression/cnn.py's FaceNet in Keras layers (VGG
blocks of two 3x3 conv + BatchNorm + ReLU, max-pooling between blocks, global average
pooling, dropout) with its width, depth and dropout, and the training-time augmentation
(random crop as a shift of up to a few pixels, horizontal flip), as hyperparameters;
`FerClassificationHead` adds label smoothing to the loss; the learning rate of Adam is the
graph's own `learning_rate`, narrowed to the values that train this network (see
`compile_hyperparameters`). All weights start from scratch; nothing is downloaded.

Importing this module imports keras with the torch backend (`expression.keras_backend.import_keras`),
so it is only imported where the search runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from fertransfer.expression.cnn import ema_update_with_warmup
from fertransfer.expression.config import CnnConfig
from fertransfer.expression.keras_backend import import_keras
from fertransfer.expression.keras_layers import FusedBatchNorm, RandomShift

from .automl_hparams import DEFAULTS, SPACE
from .keras_env import deadline_callback

log = logging.getLogger(__name__)

keras, ak = import_keras()


def choose(hp, name: str, fixed: dict):
    """One hyperparameter of SPACE: held where `fixed` names it (recorded in every trial all the
    same), searched over SPACE otherwise."""
    if name in fixed:
        return hp.Fixed(name, fixed[name])
    if isinstance(DEFAULTS[name], bool):
        return hp.Boolean(name, default=DEFAULTS[name])
    return hp.Choice(name, SPACE[name], default=DEFAULTS[name])


# The running statistics' momentum of torch's BatchNorm (0.1 there, written the other way round).
# Keras's default of 0.99 leaves them near their initial values for hundreds of steps, so a short
# trial scored at chance on validation whatever it had learned (FER2013, 2,000 images: val accuracy
# 0.18, 0.18, 0.15 after 1, 2, 3 epochs at 0.99; 0.21, 0.28, 0.32 at 0.9; docs/results.md).
BATCHNORM_MOMENTUM = 0.9


class FerCnnBlock(ak.Block):
    """FaceNet's family: `depth` VGG blocks of width `width` * 2^i, augmentation in front; the
    hyperparameters named in `fixed` are held at its values."""

    norm = FusedBatchNorm  # bench/automl_cost.py --batchnorm keras puts Keras's own layer here to compare

    def __init__(self, fixed: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fixed = dict(fixed or {})

    def get_config(self):
        return {**super().get_config(), "fixed": self.fixed}

    def build(self, hp, inputs=None):
        x = keras.tree.flatten(inputs)[0]
        width, depth, dropout, shift, flip = (choose(hp, name, self.fixed)
                                              for name in ("width", "depth", "dropout", "shift", "flip"))
        # Augmentation layers act in training only; at inference the whole face goes through
        # (global pooling makes the network indifferent to the input size).
        if flip:
            x = keras.layers.RandomFlip("horizontal")(x)
        if shift:
            x = RandomShift(shift)(x)
        for i in range(depth):
            for _ in range(2):
                x = keras.layers.Conv2D(width * 2**i, 3, padding="same", use_bias=False)(x)
                x = self.norm(momentum=BATCHNORM_MOMENTUM)(x)
                x = keras.layers.ReLU()(x)
            if i < depth - 1:
                x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        return x


class FerClassificationHead(ak.ClassificationHead):
    """AutoKeras's classification head with label smoothing as a hyperparameter (and no
    dropout of its own: the block has it)."""

    def __init__(self, fixed: dict | None = None, **kwargs):
        kwargs["dropout"] = 0.0
        super().__init__(**kwargs)
        self.fixed = dict(fixed or {})

    def get_config(self):
        return {**super().get_config(), "fixed": self.fixed}

    def build(self, hp, inputs=None):
        smoothing = choose(hp, "label_smoothing", self.fixed)
        # The graph compiles with the head's loss after every block is built.
        self.loss = type(self.infer_loss())(label_smoothing=smoothing)
        return super().build(hp, inputs)


def compile_hyperparameters(fixed: dict | None = None):
    """The graph's compile-time hyperparameters, narrowed: Adam (a constant rate ranks short
    trials fairly; the final run adds warm-up and cosine decay) over the rates in SPACE, or the
    one `fixed` names. Registered before the graph asks for them, so the graph's wider choices
    are not used."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Fixed("optimizer", "adam")
    choose(hp, "learning_rate", fixed or {})
    return hp


def fer_cnn_graph(num_classes: int, fixed: dict | None = None):
    """(inputs, outputs) of the AutoModel: image in, the block, the head."""
    inputs = ak.ImageInput()
    x = FerCnnBlock(fixed, name="fer_cnn")(inputs)
    outputs = FerClassificationHead(fixed, num_classes=num_classes, multi_label=False, name="head")(x)
    return inputs, outputs


def plain_values(values: dict) -> dict:
    """A trial's hyperparameters without the scopes AutoKeras adds (fer_cnn/width -> width)."""
    return {name.rsplit("/", 1)[-1] if not name.startswith("tuner/") else name: value
            for name, value in values.items()}


# --- the search: successive halving on a subset, then the best configuration on all images ----


class KeepsDtypePolicy:
    """A tuner that builds every model under the dtype policy set when it was made. keras-tuner
    clears Keras's session before each trial, and Keras 3 keeps the global policy in that state:
    a search under mixed_bfloat16 built every trial, and the final run, in float32 (session 23's
    "bf16" hour trained in float32)."""

    def __init__(self, *args, **kwargs):
        self.dtype_policy = keras.config.dtype_policy().name
        super().__init__(*args, **kwargs)

    def _build_hypermodel(self, hp):
        keras.config.set_dtype_policy(self.dtype_policy)
        return super()._build_hypermodel(hp)


class FerHyperband(KeepsDtypePolicy, ak.tuners.Hyperband):
    """AutoKeras's Hyperband (successive halving over brackets: many 1-epoch trials, the best
    continued for more epochs), with the continuation repaired: AutoKeras 3.0.0's tuner never
    writes the build config keras-tuner 1.4 reads back before loading a trial's weights
    (FileNotFoundError .../build_config.json). A functional model is built when made, so the
    checkpoint loads directly."""

    def _build_hypermodel(self, hp):
        import keras_tuner

        keras.config.set_dtype_policy(self.dtype_policy)  # keras-tuner's own build, past KeepsDtypePolicy's
        model = keras_tuner.Tuner._build_hypermodel(self, hp)
        if "tuner/trial_id" in hp.values:
            model.load_weights(self._get_checkpoint_fname(hp.values["tuner/trial_id"]))
        return model


class Greedy(KeepsDtypePolicy, ak.tuners.Greedy):
    """AutoKeras's greedy tuner (the convblock space's), keeping the dtype policy."""


def trial_recorder(tuner, records: dict):
    """A callback that writes each trial's epochs (history rows) and seconds into `records`
    (trial id -> dict), whether the trial ends by its epochs or by the budget. keras-tuner
    deep-copies callbacks per trial; `records` is reached through the closure, not copied."""

    class TrialRecorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            trial = next(iter(tuner.oracle.ongoing_trials.values()), None)
            self.record = records.setdefault(trial.trial_id if trial else "?", {"epochs": [], "seconds": 0.0})
            self.start = self.epoch_start = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.record["epochs"].append(history_row(epoch + 1, logs or {}, time.monotonic() - self.epoch_start))

        def on_train_end(self, logs=None):
            self.record["seconds"] += time.monotonic() - self.start

    return TrialRecorder()


def history_row(epoch: int, logs: dict, seconds: float, lr: float | None = None) -> dict:
    """One epoch in the project's history format (classify.evaluate.plot_history reads it)."""
    row = {"epoch": epoch, "train_loss": float(logs.get("loss", np.nan)), "train_acc": float(logs.get("accuracy", np.nan)),
           "val_loss": float(logs.get("val_loss", np.nan)), "val_acc": float(logs.get("val_accuracy", np.nan)),
           "seconds": round(seconds, 2)}
    if lr is not None:
        row["lr"] = lr
    return row


def trial_rows(tuner, records: dict, space: dict | None = SPACE) -> list[dict]:
    """Every trial, in the order run: its hyperparameters (those of `space`; None: every one any
    trial has), the epochs it trained (continued trials start from their parent's weights), its
    best val accuracy, seconds and status. Every row has the same keys."""
    rows = []
    trials = {trial_id: plain_values(trial.hyperparameters.values) for trial_id, trial in tuner.oracle.trials.items()}
    if space is None:
        space = dict.fromkeys(name for values in trials.values() for name in values if not name.startswith("tuner/"))
    for trial_id, trial in tuner.oracle.trials.items():
        values = trials[trial_id]
        record = records.get(trial_id, {"epochs": [], "seconds": 0.0})
        accuracies = [r["val_acc"] for r in record["epochs"] if not np.isnan(r["val_acc"])]
        row = {"trial": trial_id, **{name: values.get(name) for name in SPACE},
               "continues": values.get("tuner/trial_id", ""),
               "epochs": len(record["epochs"]), "epochs_total": int(values.get("tuner/epochs", len(record["epochs"]))),
               "val_acc": round(max(accuracies), 4) if accuracies else None,
               "seconds": round(record["seconds"], 1), "status": str(trial.status).lower(),
               "history": record["epochs"]}
        rows.append(row)
    return rows


def budget_schedule(lr: float, epochs: int, steps_per_epoch: int, budget_seconds: float, warmup: float = 0.05):
    """The CNN engine's schedule for the final run: linear warm-up, then cosine to zero over
    *progress*, the larger of the share of steps and the share of the time budget used; training
    stops when progress reaches 1, so a time-limited run still anneals."""
    import math

    total = max(1, epochs * steps_per_epoch)

    class BudgetCosine(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.step, self.lr = time.monotonic(), 0, lr

        def progress(self) -> float:
            p = self.step / total
            if budget_seconds > 0:
                p = max(p, (time.monotonic() - self.start) / budget_seconds)
            return p

        def on_train_batch_begin(self, batch, logs=None):
            p = self.progress()
            if p >= 1.0:
                self.model.stop_training = True
            if p < warmup:
                self.lr = lr * max(p / warmup, 0.02)
            else:
                self.lr = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (p - warmup) / (1 - warmup))))
            self.model.optimizer.learning_rate.assign(self.lr)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.progress() >= 1.0:
                self.model.stop_training = True

    return BudgetCosine()


def cnn_sgd(lr: float, weight_decay: float, momentum: float = CnnConfig.momentum):
    """The CNN engine's optimiser for the final run: SGD with Nesterov momentum, no weight decay on
    norms and biases. torch's SGD adds `weight_decay * w` to the gradient, which momentum then
    carries about 1 / (1 - momentum) times; Keras's shrinks the weights once a step, so the same
    strength there is `weight_decay / (1 - momentum)`."""
    optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=True,
                                     weight_decay=weight_decay / (1 - momentum))
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def keep_best(final_history: list[dict], schedule, ema: float = 0.0, val_data: tuple | None = None,
              batch_size: int = 64):
    """A callback that records each epoch of the final run and keeps the weights of the best
    validation epoch, as the CNN engine does. With `ema` > 0 it also keeps the CNN's moving average
    of the weights (BatchNorm's statistics included, the same warm-up) and scores it on `val_data`
    each epoch: the better of the raw and the averaged weights competes for best."""
    update = ema_update_with_warmup(ema) if ema > 0 else None
    if update is not None and val_data is None:
        raise ValueError("a weight average needs the validation data to score it")

    class KeepBest(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.best_acc, self.best_epoch, self.best_weights, self.best_kind = -1.0, 0, None, "raw"
            if update is not None:
                self.variables = self.model.weights
                self.averaged = [v.value.detach().clone() for v in self.variables]
                self.updates = torch.zeros((), dtype=torch.long)
                # as torch's AveragedModel does: float weights averaged, integer counters copied
                self.groups = [group for group in (
                    [(a, v) for a, v in zip(self.averaged, self.variables, strict=True) if torch.is_floating_point(a)],
                    [(a, v) for a, v in zip(self.averaged, self.variables, strict=True)
                     if not torch.is_floating_point(a)]) if group]

        def on_train_batch_end(self, batch, logs=None):
            if update is None:
                return
            for group in self.groups:
                update([a for a, _ in group], [v.value for _, v in group], self.updates)
            self.updates += 1

        def averaged_scores(self) -> dict:
            """Val loss and accuracy of the averaged weights; the raw ones are put back after."""
            raw = [v.value.detach().clone() for v in self.variables]
            for v, a in zip(self.variables, self.averaged, strict=True):
                v.assign(a)
            scores = self.model.evaluate(*val_data, batch_size=batch_size, verbose=0, return_dict=True)
            for v, r in zip(self.variables, raw, strict=True):
                v.assign(r)
            return scores

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            candidates = [("raw", float((logs or {}).get("val_accuracy", np.nan)))]
            extra = {}
            if update is not None:
                scores = self.averaged_scores()
                extra = {"val_loss_ema": float(scores["loss"]), "val_acc_ema": float(scores["accuracy"])}
                candidates.append(("ema", extra["val_acc_ema"]))
            row = {**history_row(epoch + 1, logs or {}, time.monotonic() - self.epoch_start, schedule.lr), **extra}
            final_history.append(row)
            log.info("final run epoch %d: train loss %.3f acc %.3f, val loss %.3f acc %.3f%s, lr %.5f, %.0f s",
                     row["epoch"], row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"],
                     f" (ema {row['val_acc_ema']:.3f})" if extra else "", row["lr"], row["seconds"])
            kind, acc = max(candidates, key=lambda c: c[1])
            if acc > self.best_acc:
                self.best_acc, self.best_epoch, self.best_kind = acc, row["epoch"], kind
                self.best_weights = (self.model.get_weights() if kind == "raw"
                                     else [a.detach().cpu().numpy() for a in self.averaged])

    return KeepBest()


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of about `count` images with the class shares of `labels` (all when count <= 0)."""
    if count <= 0 or count >= len(labels):
        return np.arange(len(labels))
    from fertransfer.data import stratified_split

    return np.sort(stratified_split(labels, count / len(labels), seed)[1])


VALIDATION_COST = 1 / 3  # an image validated costs about a third of one trained (forward only)


def final_epoch_seconds(trial: dict, trial_images: int, all_images: int, val_images: int) -> float:
    """A trial's configuration's epoch on every training image, estimated from the trial's own
    epochs (which include validating `val_images`)."""
    per_epoch = trial["seconds"] / max(1, trial["epochs"])
    per_image = per_epoch / (trial_images + VALIDATION_COST * val_images)
    return per_image * (all_images + VALIDATION_COST * val_images)


def choose_final_trial(scored: list[dict], trial_images: int, all_images: int, val_images: int,
                       remaining_seconds: float, min_epochs: int) -> tuple[dict, dict]:
    """The best trial by validation accuracy among those whose configuration can train at least
    `min_epochs` epochs on every image in what is left of the budget; short trials favour wide
    nets that then hold only a few epochs (FER2013's hour, session 18: width 48 chosen, 4 final epochs, the last cut short).
    Without a budget or a minimum, or when no trial fits, simply the best. Returns the trial and
    each trial's affordable epochs."""
    affordable = {t["trial"]: (round(remaining_seconds / final_epoch_seconds(t, trial_images, all_images, val_images), 1)
                               if remaining_seconds > 0 and t["seconds"] > 0 else None) for t in scored}
    fitting = [t for t in scored if affordable[t["trial"]] is None or affordable[t["trial"]] >= min_epochs]
    best = max(fitting or scored, key=lambda t: t["val_acc"])
    return best, affordable


def unspent_minutes(affordable_epochs: float | None, final_epochs: int, remaining_seconds: float) -> float:
    """Minutes of the budget the final run leaves unused when `final_epochs` caps it before the clock
    does (seed 1's 12-trial search picked width 16, which trained 94 epochs in the hour's 58 minutes:
    a cap of 60 would have ended it about 20 minutes early). 0 when the clock ends the run."""
    if not affordable_epochs or remaining_seconds <= 0 or final_epochs >= affordable_epochs:
        return 0.0
    return remaining_seconds / 60 * (1 - final_epochs / affordable_epochs)


def search_fer_cnn(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   num_classes: int, config, work_dir: Path, seed: int, verbose: int):
    """Successive halving over the space on a stratified subset, then the best configuration
    trained on every image for the rest of the budget; selection on the validation split only.

    x_* are standardised float images, y_* one-hot labels. Returns (model, final history, info).
    """
    t0 = time.monotonic()
    budget = config.time_budget_minutes * 60.0
    labels = y_train.argmax(1)
    subset = stratified_subset(labels, config.trial_images, seed)
    inputs, outputs = fer_cnn_graph(num_classes, config.fixed)
    search = ak.AutoModel(
        inputs=inputs, outputs=outputs, max_trials=config.max_trials, directory=str(work_dir), project_name="search",
        overwrite=True, seed=seed, tuner=FerHyperband, objective="val_accuracy",
        hyperparameters=compile_hyperparameters(config.fixed), tune_new_entries=True, max_epochs=config.epochs,
        factor=3,
        # brackets again until max_trials or the budget ends the search (one pass of the brackets
        # may hold fewer trials: a single one when trials are 1 epoch long)
        hyperband_iterations=config.max_trials,
    )
    records: dict = {}
    # An EarlyStopping that never fires keeps AutoKeras from refitting after the search (see automl.py).
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.epochs + 1),
                 trial_recorder(search.tuner, records)]
    if budget > 0:
        callbacks.append(deadline_callback(t0 + budget * config.search_share, search.tuner))
    log.info("fer_cnn search: up to %d trials of at most %d epochs on %d of %d training images%s%s", config.max_trials,
             config.epochs, len(subset), len(labels),
             f", {budget * config.search_share / 60:.1f} of the budget's {budget / 60:.1f} min" if budget else "",
             "; held: " + ", ".join(f"{k} {v}" for k, v in config.fixed.items()) if config.fixed else "")
    search.fit(x_train[subset], y_train[subset], epochs=config.epochs, batch_size=config.batch_size,
               validation_data=(x_val, y_val), callbacks=callbacks, verbose=verbose)
    trials = trial_rows(search.tuner, records)
    search_seconds = time.monotonic() - t0
    scored = [t for t in trials if t["val_acc"] is not None]
    if not scored:
        raise RuntimeError("the search ended before any trial finished an epoch; give it a larger time budget")
    remaining = budget - search_seconds if budget > 0 else 0.0
    best_trial, affordable = choose_final_trial(scored, len(subset), len(labels), len(x_val),
                                                remaining if config.final_epochs > 0 else 0.0, config.final_min_epochs)
    for t in trials:
        t["final_epochs_affordable"] = affordable.get(t["trial"])
        log.info("trial %s: %s, %d epoch(s), val acc %s, %.0f s%s", t["trial"],
                 ", ".join(f"{k} {t[k]}" for k in SPACE), t["epochs"], t["val_acc"], t["seconds"],
                 f", {t['final_epochs_affordable']} final epochs affordable" if t["final_epochs_affordable"] else "")
    top = max(scored, key=lambda t: t["val_acc"])
    if top is not best_trial:
        log.info("trial %s (val acc %s) affords %s final epochs, under automl_final_min_epochs %d: trial %s kept",
                 top["trial"], top["val_acc"], affordable[top["trial"]], config.final_min_epochs, best_trial["trial"])
    best_affordable = affordable[best_trial["trial"]]
    unspent = unspent_minutes(best_affordable, config.final_epochs, remaining)
    if unspent >= 1:
        log.warning("trial %s affords about %.0f final epochs in the %.1f min left; automl_final_epochs = %d ends the "
                    "final run about %.0f min before the budget: raise it to spend them", best_trial["trial"],
                    best_affordable, remaining / 60, config.final_epochs, unspent)
    best_hp = search.tuner.oracle.get_trial(best_trial["trial"]).hyperparameters
    info = {"space": "fer_cnn", "trial_images": len(subset), "search_seconds": round(search_seconds, 1),
            # AutoKeras's own time around the trials' fits (setup, model builds, checkpoints)
            "search_overhead_seconds": round(search_seconds - sum(t["seconds"] for t in trials), 1),
            "fixed": dict(config.fixed), "best_trial": best_trial["trial"],
            "best_hyperparameters": {k: best_trial[k] for k in SPACE},
            "best_trial_val_acc": best_trial["val_acc"], "final_min_epochs": config.final_min_epochs,
            "final_epochs_affordable": best_affordable, "final_unspent_minutes": round(unspent, 1)}

    final_history: list[dict] = []
    model, kept = None, "trial"
    if config.final_epochs > 0 and (budget <= 0 or remaining > 0):
        keras.config.set_dtype_policy(search.tuner.dtype_policy)
        model = search.tuner.hypermodel.build(best_hp)
        peak = best_trial["learning_rate"]
        if config.final_optimizer == "sgd":  # the trials' Adam ranks configurations; the CNN's recipe trains the pick
            peak = config.final_lr
            model.compile(optimizer=cnn_sgd(peak, config.final_weight_decay), loss=model.loss, metrics=["accuracy"])
        info["final_optimizer"] = {"name": config.final_optimizer, "lr": peak,
                                   **({"weight_decay": config.final_weight_decay} if config.final_optimizer == "sgd"
                                      else {})}
        info["final_ema"] = config.final_ema
        steps = -(-len(labels) // config.batch_size)
        schedule = budget_schedule(peak, config.final_epochs, steps, max(0.0, remaining))
        best = keep_best(final_history, schedule, config.final_ema, (x_val, y_val), config.batch_size)
        log.info("final run: trial %s's configuration on all %d images, %s at %g, %d epochs%s", best_trial["trial"],
                 len(labels), config.final_optimizer, peak, config.final_epochs,
                 f" or {remaining / 60:.1f} min" if budget > 0 else "")
        model.fit(x_train, y_train, epochs=config.final_epochs, batch_size=config.batch_size,
                  validation_data=(x_val, y_val), callbacks=[schedule, best], verbose=verbose)
        if best.best_weights is not None and best.best_acc >= best_trial["val_acc"]:
            model.set_weights(best.best_weights)
            kept = "final"
            info.update(final_best_epoch=best.best_epoch, final_val_acc=round(best.best_acc, 4),
                        final_best_weights=best.best_kind)
    history = final_history
    if kept == "trial":  # the final run did not run, or did not beat the trial on val
        model = search.tuner.load_model(search.tuner.oracle.get_trial(best_trial["trial"]))
        history = best_trial["history"]
        info["final_history"] = final_history
    info.update(kept=kept, final_epochs_run=len(final_history), seconds=round(time.monotonic() - t0, 1))
    info["trials"] = trials
    return model, history, info
