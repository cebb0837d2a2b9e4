"""The AutoKeras search spaces on tiny data: the fer_cnn block builds and trains, every trial
and its hyperparameters are recorded, a budget cut keeps the history, and bad settings are
config errors that say what would fit or what is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fertransfer.classify.automl import AutoKerasConfig, smallest_budget_minutes, train_autokeras
from fertransfer.classify.stage import ClassifyOptions
from fertransfer.pipelines.config import ConfigError, default_config_text, load_config
from fertransfer.pipelines.options import DataOptions

CLASSES = ["a", "b", "c"]


def tiny_data(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes a CNN tells apart in an epoch or two: dark, mid-grey and bright squares."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = (labels[:, None, None, None] * 100 + rng.integers(0, 40, (n, size, size, 1))).astype(np.uint8)
    return images, labels


def test_fer_cnn_search_records_every_trial_and_keeps_the_best(tmp_path):
    from fertransfer.classify.automl_space import BATCHNORM_MOMENTUM, SPACE

    x, y = tiny_data(36)
    xv, yv = tiny_data(12, seed=1)
    config = AutoKerasConfig(max_trials=2, epochs=1, batch_size=12, trial_images=24, final_epochs=1)
    result = train_autokeras(x, y, xv, yv, CLASSES, config, tmp_path / "trials", seed=0)
    info = result.info
    assert info["space"] == "fer_cnn" and info["trial_images"] == 24
    assert len(info["trials"]) == 2
    for trial in info["trials"]:
        # the block's and the head's hyperparameters, plain (no scopes), each within the space
        assert all(trial[name] in SPACE[name] for name in SPACE)
        assert trial["epochs"] == 1 and len(trial["history"]) == 1
        assert 0 <= trial["val_acc"] <= 1 and trial["seconds"] > 0
    assert info["best_hyperparameters"] == {k: info["trials"][int(info["best_trial"])][k] for k in SPACE}
    assert info["final_epochs_run"] == 1 and info["kept"] in ("final", "trial")
    assert result.history and {"epoch", "train_loss", "val_acc"} <= set(result.history[0])
    probs = result.classifier.predict_proba(xv)
    assert probs.shape == (12, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)
    # short trials are only comparable when BatchNorm's running statistics follow the training
    norms = [layer for layer in result.classifier.model.layers if type(layer).__name__ == "FusedBatchNorm"]
    assert norms and all(layer.momentum == BATCHNORM_MOMENTUM for layer in norms)


def test_random_shift_moves_each_image_within_its_reflected_border_and_survives_saving(tmp_path):
    """The fer_cnn block's crop: every image shifted by at most `shift` pixels each way, the border
    reflected, nothing at inference; a model with it saves and loads as any AutoKeras model."""
    from fertransfer.expression.keras_layers import RandomShift, keras
    from fertransfer.expression.keras_model import AutoKerasClassifier

    images = np.arange(8 * 6 * 6, dtype=np.float32).reshape(8, 6, 6, 1)
    layer = RandomShift(2, seed=0)
    shifted = np.asarray(layer(images, training=True))
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    for image, source in zip(shifted, padded):  # each output is one 6x6 window of its padded input
        windows = [(r, c) for r in range(5) for c in range(5) if np.array_equal(source[r:r + 6, c:c + 6], image)]
        assert windows
    assert not all(np.array_equal(a, b) for a, b in zip(shifted, images))  # some image moved
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    inputs = keras.Input((6, 6, 1))
    features = keras.layers.GlobalAveragePooling2D()(RandomShift(2)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(features))
    classifier = AutoKerasClassifier(model, CLASSES, 1, 6)
    meta = {**classifier.save(tmp_path), "classes": CLASSES, "channels": 1, "size": 6}
    loaded = AutoKerasClassifier.load(tmp_path, meta)
    faces = np.arange(2 * 36, dtype=np.uint8).reshape(2, 6, 6, 1)
    assert np.allclose(loaded.predict_proba(faces), classifier.predict_proba(faces), atol=1e-6)


def test_a_search_under_bf16_saves_a_model_that_computes_in_float32(tmp_path):
    """bf16 = "on": the trials and the final run under Keras's mixed_bfloat16 policy, recorded; the
    model handed back (and saved) computes in float32, so a CPU without native bf16 predicts at full
    speed, and the global policy is what it was before."""
    from fertransfer.expression.keras_layers import keras
    from fertransfer.expression.keras_model import AutoKerasClassifier

    x, y = tiny_data(36)
    xv, yv = tiny_data(12, seed=1)
    # a small network: a CPU without native bf16 emulates it, many times slower
    config = AutoKerasConfig(max_trials=1, epochs=1, batch_size=12, trial_images=24, final_epochs=1, bf16="on",
                             fixed={"width": 8, "depth": 2})
    result = train_autokeras(x, y, xv, yv, CLASSES, config, tmp_path / "trials", seed=0)
    assert result.info["precision"] == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    model = result.classifier.model
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    probs = result.classifier.predict_proba(xv)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-5)
    meta = {**result.classifier.save(tmp_path), "classes": CLASSES, "channels": 1, "size": 16}
    loaded = AutoKerasClassifier.load(tmp_path, meta)
    assert {layer.dtype_policy.name for layer in loaded.model.layers} == {"float32"}
    assert np.allclose(loaded.predict_proba(xv), probs, atol=1e-6)


def test_the_float32_copy_of_a_bf16_model_predicts_what_it_did(tmp_path):
    """as_float32 keeps the architecture and the weights: its predictions are the bf16 model's to
    within bf16's rounding, and exactly a float32 model's own."""
    from fertransfer.classify.automl import as_float32
    from fertransfer.expression.keras_layers import RandomShift, keras

    def build():
        inputs = keras.Input((8, 8, 1))
        x = RandomShift(1)(inputs)
        x = keras.layers.Conv2D(4, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build()
    finally:
        keras.config.set_dtype_policy("float32")
    images = np.random.default_rng(0).normal(size=(6, 8, 8, 1)).astype(np.float32)
    copy = as_float32(mixed)
    assert {layer.dtype_policy.name for layer in mixed.layers} == {"mixed_bfloat16"}
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    low, full = np.asarray(mixed.predict(images, verbose=0), np.float32), np.asarray(copy.predict(images, verbose=0))
    assert full.dtype == np.float32 and not np.array_equal(low, full)  # the copy really computes otherwise
    assert np.allclose(low, full, atol=0.02)
    plain = build()
    assert np.array_equal(as_float32(plain).predict(images, verbose=0), plain.predict(images, verbose=0))


def test_held_hyperparameters_are_the_same_in_every_trial_and_built_into_the_model(tmp_path):
    """automl_fixed: the CNN's augmentation held, the rest searched; a held value need not be one
    of the space's (width 20), and the model built is the one held."""
    fixed = {"width": 20, "shift": 2, "flip": True, "label_smoothing": 0.1, "dropout": 0.2}
    x, y = tiny_data(36)
    xv, yv = tiny_data(12, seed=1)
    config = AutoKerasConfig(max_trials=3, epochs=1, batch_size=12, trial_images=24, final_epochs=1, fixed=fixed)
    result = train_autokeras(x, y, xv, yv, CLASSES, config, tmp_path / "trials", seed=0)
    assert result.info["fixed"] == fixed
    assert len(result.info["trials"]) == 3
    for trial in result.info["trials"]:
        assert {name: trial[name] for name in fixed} == fixed
    assert {k: result.info["best_hyperparameters"][k] for k in fixed} == fixed
    layers = {type(layer).__name__: layer for layer in result.classifier.model.layers}
    assert layers["RandomShift"].shift == 2 and "RandomFlip" in layers and layers["Dropout"].rate == 0.2
    convs = [layer.filters for layer in result.classifier.model.layers if type(layer).__name__ == "Conv2D"]
    assert convs[0] == 20


def test_automl_fixed_names_an_unknown_hyperparameter_or_a_wrong_value():
    from fertransfer.classify.automl_hparams import SPACE
    from fertransfer.classify.stage import STAGE

    options = ClassifyOptions(engine="autokeras", automl_fixed={"crop": 44, "flip": 1, "width": 2.5, "shift": 2})
    problems = STAGE.check(options, None, DataOptions())
    assert f"automl_fixed: unknown hyperparameter 'crop'; known: {', '.join(SPACE)}" in problems
    assert "automl_fixed.flip: expected true or false, got 1" in problems
    assert "automl_fixed.width: expected a whole number >= 1, got 2.5" in problems
    assert not any(p.startswith("automl_fixed.shift") for p in problems)
    # the convblock space has none of these hyperparameters
    convblock = ClassifyOptions(engine="autokeras", automl_space="convblock", automl_fixed={"shift": 2})
    assert any("automl_fixed: holds hyperparameters of the fer_cnn space" in p
               for p in STAGE.check(convblock, None, DataOptions()))


def test_a_trial_the_budget_stops_keeps_its_history(tmp_path):
    # A budget of about a second: the first trial is stopped in its first epoch, the search ends,
    # and what it trained is still recorded (the ConvBlock search recorded 0 epochs then).
    x, y = tiny_data(48)
    xv, yv = tiny_data(12, seed=1)
    config = AutoKerasConfig(max_trials=5, epochs=3, batch_size=4, trial_images=0, final_epochs=0,
                             time_budget_minutes=0.02, search_share=0.5)
    result = train_autokeras(x, y, xv, yv, CLASSES, config, tmp_path / "trials", seed=0)
    trials = result.info["trials"]
    assert 1 <= len(trials) < 5
    assert trials[0]["epochs"] >= 1 and trials[0]["history"][0]["val_acc"] >= 0
    assert result.info["kept"] == "trial" and result.history == trials[int(result.info["best_trial"])]["history"]


def test_a_budget_too_small_for_one_trial_says_the_smallest_that_fits():
    from fertransfer.classify.stage import STAGE

    options = ClassifyOptions(engine="autokeras", epochs=3, automl_trial_images=4000, time_budget_minutes=1.0)
    need = smallest_budget_minutes("fer_cnn", 3, 4000, options.automl_search_share)
    assert need > 1.0
    problems = STAGE.check(options, None, DataOptions())
    assert any(f"at least {need:.1f} min" in p and p.startswith("time_budget_minutes") for p in problems), problems
    fits = ClassifyOptions(engine="autokeras", epochs=3, time_budget_minutes=need + 0.1)
    assert not STAGE.check(fits, None, DataOptions())
    # the cnn engine has no trials to fit
    assert not STAGE.check(ClassifyOptions(engine="cnn", epochs=3, time_budget_minutes=1.0), None, DataOptions())


def test_an_unknown_search_space_lists_the_known_ones(tmp_path):
    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({"data": {"fer": str(tmp_path)},
                                           "classify": {"engine": "autokeras", "automl_space": "nasnet"}}))
    with pytest.raises(ConfigError, match=r"automl_space: 'nasnet' is not one of fer_cnn, convblock"):
        load_config(config)


def test_stage_lists_the_trials_in_the_manifest_and_the_report(tmp_path, smileys):
    from fertransfer.pipelines.report import write_report
    from fertransfer.pipelines.runner import MANIFEST, run_stage

    folder = tmp_path / "run"
    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({
        "run": {"dir": "run", "device": "cpu"}, "data": {"fer": str(smileys)},
        "classify": {"engine": "autokeras", "max_trials": 2, "epochs": 1, "batch_size": 16,
                     "train_limit": 42, "automl_trial_images": 21, "automl_final_epochs": 1, "size": 24}}))
    assert run_stage(load_config(config), "classify").state == "done"
    summary = json.loads((folder / "classify" / MANIFEST).read_text())["summary"]
    search = summary["automl_search"]["real"]
    assert search["space"] == "fer_cnn" and len(search["trials"]) == 2
    assert {"width", "depth", "learning_rate", "epochs", "val_acc", "seconds"} <= set(search["trials"]["trial 0"])
    assert (folder / "classify" / "search_real.png").is_file()
    assert "AutoKeras search (fer_cnn): 2 trials" in (folder / "classify" / "report.md").read_text()
    page = write_report(folder).read_text()
    assert "trial 1" in page and "search_real.png" in page


def test_the_final_run_takes_the_best_trial_that_affords_its_epochs():
    from fertransfer.classify.automl_space import choose_final_trial, final_epoch_seconds

    # 2 epochs on 1,000 images + 300 validated (cost 1,000 + 100 = 1,100 units): 11 s an epoch -> 0.01 s a unit;
    # on 10,000 images + 300 validated: 101 s an epoch
    wide = {"trial": "00", "val_acc": 0.40, "seconds": 22.0, "epochs": 2}
    narrow = {"trial": "01", "val_acc": 0.38, "seconds": 4.4, "epochs": 2}  # 20.2 s an epoch
    assert final_epoch_seconds(wide, 1000, 10_000, 300) == pytest.approx(101.0)
    best, affordable = choose_final_trial([wide, narrow], 1000, 10_000, 300, remaining_seconds=505.0, min_epochs=10)
    assert best is narrow and affordable == {"00": 5.0, "01": 25.0}
    # a minimum of 0, no time budget, or no trial that fits: the best by validation accuracy
    assert choose_final_trial([wide, narrow], 1000, 10_000, 300, 505.0, min_epochs=0)[0] is wide
    assert choose_final_trial([wide, narrow], 1000, 10_000, 300, 0.0, min_epochs=10)[0] is wide
    assert choose_final_trial([wide, narrow], 1000, 10_000, 300, 50.0, min_epochs=10)[0] is wide


def test_a_final_epoch_cap_under_what_the_budget_affords_is_reported_as_unspent_minutes():
    from fertransfer.classify.automl_space import unspent_minutes

    # 90 epochs affordable in 60 minutes, capped at 60: the run stops a third of the way short
    assert unspent_minutes(90.0, 60, 3600.0) == pytest.approx(20.0)
    # the clock ends the run first, or there is no budget or no estimate: nothing unspent
    assert unspent_minutes(47.0, 60, 3450.0) == 0.0
    assert unspent_minutes(90.0, 60, 0.0) == 0.0
    assert unspent_minutes(None, 60, 3600.0) == 0.0


def test_the_fused_batch_norm_computes_what_keras_batch_normalization_does():
    """FusedBatchNorm (torch's kernel) against Keras's own layer with the same weights: the same
    outputs in training and at inference, the same running statistics after a training call (up
    to torch's unbiased variance), and the same config."""
    from fertransfer.expression.keras_layers import FusedBatchNorm, keras

    images = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 5, 5, 4)).astype(np.float32)
    fused, plain = FusedBatchNorm(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    fused.build(images.shape)
    plain.build(images.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=4).astype(np.float32) for _ in range(2)] + [np.zeros(4, np.float32),
                                                                           np.ones(4, np.float32)]
    fused.set_weights(weights)
    plain.set_weights(weights)
    out_fused, out_plain = (keras.ops.convert_to_numpy(layer(images, training=True)) for layer in (fused, plain))
    assert np.allclose(out_fused, out_plain, atol=1e-4)
    pixels = 8 * 5 * 5
    mean, variance = images.mean(axis=(0, 1, 2)), images.var(axis=(0, 1, 2))
    assert np.allclose(fused.moving_mean.numpy(), 0.1 * mean, atol=1e-5)
    assert np.allclose(fused.moving_variance.numpy(), 0.9 + 0.1 * variance * pixels / (pixels - 1), atol=1e-4)
    assert np.allclose(plain.moving_mean.numpy(), fused.moving_mean.numpy(), atol=1e-5)
    fused.set_weights(plain.get_weights())
    at_inference = [keras.ops.convert_to_numpy(layer(images, training=False)) for layer in (fused, plain)]
    assert np.allclose(*at_inference, atol=1e-4)
    assert {k: v for k, v in fused.get_config().items() if k != "name"} == \
        {k: v for k, v in plain.get_config().items() if k != "name"}


def test_test_time_views_and_the_classifier_averaging_them(tmp_path):
    """tencrop: the face, moved 2 px towards each corner (border reflected), each mirrored; the
    classifier averages its model's outputs over them, and keeps its tta through saving."""
    from fertransfer.expression.keras_layers import keras
    from fertransfer.expression.keras_model import AutoKerasClassifier, standardise, test_views

    images = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    assert len(test_views(images, "center")) == 1 and len(test_views(images, "flip")) == 2
    views = test_views(images, "tencrop")
    assert len(views) == 10 and all(v.shape == images.shape for v in views)
    assert np.array_equal(views[1], np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")[:, :6, :6])
    assert np.array_equal(views[5], images[:, :, ::-1])
    with pytest.raises(ValueError, match="tta must be center, flip or tencrop"):
        test_views(images, "fivecrop")
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    classifier = AutoKerasClassifier(model, CLASSES, 1, 6, tta="flip")
    faces = np.random.default_rng(0).integers(0, 255, (4, 6, 6, 1)).astype(np.uint8)
    x = standardise(faces)
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert np.allclose(classifier.predict_proba(faces), expected, atol=1e-6)
    assert not np.allclose(classifier.predict_proba(faces, tta="center"), expected, atol=1e-3)
    meta = {**classifier.save(tmp_path), "classes": CLASSES, "channels": 1, "size": 6}
    assert AutoKerasClassifier.load(tmp_path, meta).tta == "flip"


def test_the_final_run_can_train_with_the_cnns_sgd(tmp_path):
    """automl_final_optimizer = "sgd": the pick is trained by Nesterov SGD at the CNN's rate, with
    no weight decay on norms and biases; recorded in the search's info."""
    from fertransfer.classify.automl_space import cnn_sgd

    x, y = tiny_data(36)
    xv, yv = tiny_data(12, seed=1)
    config = AutoKerasConfig(max_trials=1, epochs=1, batch_size=12, trial_images=24, final_epochs=2,
                             final_optimizer="sgd", final_lr=0.02, final_weight_decay=1e-3, final_ema=0.9,
                             tta="flip")
    result = train_autokeras(x, y, xv, yv, CLASSES, config, tmp_path / "trials", seed=0)
    assert result.info["final_optimizer"] == {"name": "sgd", "lr": 0.02, "weight_decay": 1e-3}
    assert result.info["final_ema"] == 0.9
    assert all("val_acc_ema" in row for row in result.info.get("final_history", result.history))
    assert result.info["final_epochs_run"] == 2 and result.classifier.tta == "flip"
    assert max(row["lr"] for row in result.history if "lr" in row) <= 0.02
    optimizer = cnn_sgd(0.05, 5e-4)
    assert optimizer.nesterov and optimizer.momentum == 0.9 and optimizer.weight_decay == pytest.approx(5e-3)
    with pytest.raises(ValueError, match="final_optimizer must be one of adam, sgd"):
        train_autokeras(x, y, xv, yv, CLASSES, AutoKerasConfig(final_optimizer="lamb"), tmp_path / "t2")


def test_the_final_runs_weight_average_follows_the_cnns_and_competes_on_validation():
    """keep_best with ema: the average is expression.cnn's (warm-up included) over every step's
    weights, BatchNorm's statistics too; it is scored on validation each epoch with the raw weights
    put back after, and the better of the two is kept."""
    from fertransfer.classify.automl_space import keep_best
    from fertransfer.expression.keras_layers import FusedBatchNorm, keras

    keras.utils.set_random_seed(0)
    x, y = tiny_data(32)
    xv, yv = tiny_data(16, seed=1)
    x, xv = x.astype(np.float32) / 255, xv.astype(np.float32) / 255
    y, yv = np.eye(3, dtype=np.float32)[y], np.eye(3, dtype=np.float32)[yv]
    inputs = keras.Input(x.shape[1:])
    hidden = FusedBatchNorm(momentum=0.9)(keras.layers.Conv2D(4, 3)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy", metrics=["accuracy"])

    class Schedule:
        lr = 0.5

    seen = [model.get_weights()]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(self.model.get_weights())

    history: list[dict] = []
    best = keep_best(history, Schedule(), 0.9, (xv, yv), batch_size=8)
    model.fit(x, y, epochs=2, batch_size=8, validation_data=(xv, yv), callbacks=[best, Record()], verbose=0)
    expected = [w.astype(np.float64) for w in seen[0]]
    for n, weights in enumerate(seen[1:]):
        d = min(0.9, (1 + n) / (10 + n))
        expected = [e + (1 - d) * (w - e) for e, w in zip(expected, weights, strict=True)]
    averaged = [a.detach().cpu().numpy() for a in best.averaged]
    assert len(seen) == 9 and all(np.allclose(a, e, atol=1e-5) for a, e in zip(averaged, expected, strict=True))
    assert all(np.array_equal(w, s) for w, s in zip(model.get_weights(), seen[-1], strict=True))  # raw put back
    model.set_weights(averaged)
    scores = model.evaluate(xv, yv, batch_size=8, verbose=0, return_dict=True)
    assert history[-1]["val_acc_ema"] == pytest.approx(scores["accuracy"])
    kinds = {"raw": max(r["val_acc"] for r in history), "ema": max(r["val_acc_ema"] for r in history)}
    assert best.best_acc == max(kinds.values()) and best.best_kind in kinds
    with pytest.raises(ValueError, match="needs the validation data"):
        keep_best([], Schedule(), 0.9)
