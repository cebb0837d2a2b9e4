"""The classify stage on tiny data: both engines for one short epoch, the experiment options,
the saved models, evaluation outputs and `pipeline predict`."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from fertransfer.classify.experiments import leave_out, oversample
from fertransfer.classify.stage import ClassifyOptions, run
from fertransfer.data import FER_CLASSES, ImageSet, load_dataset, write_png
from fertransfer.expression.models import coarse_groups, load_classifier
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.config import default_config_text, load_config
from fertransfer.pipelines.options import DataOptions, RunOptions
from fertransfer.pipelines.runner import run_stage
from fertransfer.pipelines.stage import StageContext, StageError

TINY = {"epochs": 1, "width": 8, "batch_size": 32, "patience": 0, "tta": "flip"}


def run_classify(tmp: Path, upstream: dict | None = None, seed: int = 0, **options) -> tuple[Path, dict]:
    """Call the stage's run function directly (so tests can hand it a fake augment folder):
    `upstream` maps a producer stage to a folder laid out as its output; `seed` is [run] seed."""
    from fertransfer.classify.stage import STAGE
    from fertransfer.pipelines import get_stage

    out = tmp / "classify.partial"
    out.mkdir(parents=True)
    data = DataOptions(**{k: options.pop(k) for k in ("fer", "labels", "ferplus", "classes") if k in options})
    stage_options = ClassifyOptions(**{**TINY, **options})
    artifacts = {}
    for need in STAGE.consumes(stage_options, data):
        folder = (upstream or {}).get(need.producer)
        artifacts[need.artifact] = (tmp / need.override if need.override else
                                    folder / get_stage(need.producer).produces[need.name] if folder else None)
    ctx = StageContext(
        name="classify", options=stage_options, run=RunOptions(device="cpu", seed=seed),
        run_dir=tmp, out_dir=out, artifacts=artifacts, config_dir=tmp,
        log=logging.getLogger("test.classify"), data=data,
    )
    return out, run(ctx)


@pytest.fixture(scope="module")
def trained(smileys, tmp_path_factory) -> Path:
    """A classify stage run through the runner: cnn, one epoch, on the smileys."""
    folder = tmp_path_factory.mktemp("classify_run")
    config = folder / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run", "device": "cpu"},
                                           "data": {"fer": str(smileys)}, "classify": TINY}))
    status = run_stage(load_config(config), "classify")
    assert status.state == "done"
    return folder / "run" / "classify"


def test_stage_writes_metrics_pictures_and_model(trained, smileys):
    data = load_dataset(smileys)
    n_test = len(data["test"])
    manifest = json.loads((trained / "manifest.json").read_text())
    summary = manifest["summary"]
    assert summary["engine"] == "cnn"
    assert summary["evaluated_on"] == {"val": len(data["val"]), "test": n_test}  # PublicTest / PrivateTest
    real = summary["train_sets"]["real"]
    assert real["train_images"] > 200 and 0.0 <= real["test_accuracy"] <= 1.0
    metrics = json.loads((trained / "real" / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == set(FER_CLASSES)
    matrix = np.array(metrics["test"]["confusion_matrix"])
    assert matrix.shape == (7, 7) and matrix.sum() == n_test
    assert np.trace(matrix) / n_test == pytest.approx(metrics["test"]["accuracy"])
    assert metrics["test"]["majority_class"] == "happy"  # the smileys follow FER2013's proportions
    assert len(metrics["history"]) == 1 and {"lr", "train_loss", "val_acc"} <= set(metrics["history"][0])
    for name in ("confusion_real.png", "curves_real.png", "comparison.png"):
        assert (trained / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy" in (trained / "report.md").read_text()
    assert not (trained / "real" / "checkpoint.pt").exists()
    model = load_classifier(trained)
    assert model.classes == list(FER_CLASSES) and (model.channels, model.size) == (1, 48)
    card = (trained / "real" / "model" / "README.md").read_text()  # the model card, FER's own labels
    assert "- labels: fer" in card and f"| test | {n_test} | {metrics['test']['accuracy']:.4f} |" in card


def test_saved_model_reproduces_scores(trained, smileys):
    model = load_classifier(trained / "real" / "model")
    test = load_dataset(smileys)["test"]
    probs = model.predict_proba(test.images)
    assert probs.shape == (len(test), 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    metrics = json.loads((trained / "real" / "metrics.json").read_text())
    assert float(np.mean(probs.argmax(1) == test.labels)) == pytest.approx(metrics["test"]["accuracy"])


def test_leave_out_and_oversample():
    images = np.zeros((10, 4, 4, 1), np.uint8)
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 3])
    split = ImageSet(images, labels, [str(i) for i in range(10)])
    kept_split, kept = leave_out(split, ["a", "b", "c", "d"], ["b"])
    assert kept == ["a", "c", "d"]
    assert kept_split.labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    balanced = oversample(kept_split, 3, seed=0)
    assert balanced.counts(3).tolist() == [4, 4, 4]
    assert set(balanced.files) == set(kept_split.files)


def test_coarse_groups_follow_the_classes():
    groups = coarse_groups(list(FER_CLASSES))
    assert groups == {"negative": ["angry", "disgust", "fear", "sad"], "positive": ["happy", "surprise"],
                      "neutral": ["neutral"]}
    assert coarse_groups(["happy", "sad", "bored"])["bored"] == ["bored"]


def write_fake_augment_set(smileys: Path, augment_dir: Path) -> None:
    """A stand-in for augment's output: one extra training set (mirrored smileys) in flat
    class-folder layout, named as augment names it (`real+synthetic` lives in real_synthetic)."""
    real = load_dataset(smileys)["train"]
    sets = augment_dir / "sets" / "real_synthetic"
    for i in range(0, len(real), 3):
        folder = sets / FER_CLASSES[real.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        write_png(folder / f"{i}.png", real.images[i][:, ::-1])


def test_experiments_compare_sets_with_literature_options(smileys, tmp_path):
    write_fake_augment_set(smileys, tmp_path / "augment")
    out, summary = run_classify(tmp_path, {"augment": tmp_path / "augment"}, fer=str(smileys),
                                train_sets=["real", "real+synthetic"], leave_out=["disgust"], oversample=True, two_tier=True)
    classes = [c for c in FER_CLASSES if c != "disgust"]
    assert summary["classes"] == classes
    test_labels = load_dataset(smileys)["test"].labels
    assert summary["evaluated_on"]["test"] == int(np.sum(test_labels != FER_CLASSES.index("disgust")))
    with open(out / "comparison.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["train_set"] for r in rows] == ["real", "real+synthetic"]
    assert {f"recall_{c}" for c in classes} <= set(rows[0]) and "recall_disgust" not in rows[0]
    metrics = json.loads((out / "real_synthetic" / "metrics.json").read_text())
    counts = metrics["training"]["train_counts"]
    assert len(set(counts.values())) == 1  # oversampled to the majority count
    assert metrics["training"]["train_images_before_oversampling"] < metrics["training"]["train_images"]
    model = load_classifier(out / "real" / "model")
    assert model.engine == "two_tier" and model.classes == classes
    assert set(model.groups) == {"negative", "positive", "neutral"}
    probs = model.predict_proba(load_dataset(smileys)["test"].images[:5])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (out / "comparison.png").stat().st_size > 0


def test_missing_augment_set_is_named(smileys, tmp_path):
    (tmp_path / "augment" / "sets" / "balanced").mkdir(parents=True)
    with pytest.raises(StageError, match=r"no training set 'synthetic'.*available: balanced"):
        run_classify(tmp_path, {"augment": tmp_path / "augment"}, fer=str(smileys), train_sets=["synthetic"])


def test_upstream_only_when_augment_sets_or_a_judge_are_named():
    from fertransfer.classify.stage import STAGE

    assert STAGE.upstream(ClassifyOptions()) == []
    assert STAGE.upstream(ClassifyOptions(train_sets=["real", "balanced"])) == ["augment"]
    # a named judge is there to score augment's translations, also when only 'real' is trained
    assert STAGE.upstream(ClassifyOptions(judge="judge_model")) == ["augment"]


def test_autokeras_engine_tiny(smileys, tmp_path):
    # AutoKeras's own ConvBlock search (the fer_cnn space has tests/test_automl.py). A time budget
    # adds a callback: the case that broke AutoKeras' refit (see automl.py).
    out, summary = run_classify(tmp_path, fer=str(smileys), engine="autokeras", automl_space="convblock",
                                max_trials=1, epochs=1, time_budget_minutes=5.0, train_limit=40, batch_size=16)
    assert summary["train_sets"]["real"]["train_images"] <= 42
    trials = summary["automl_search"]["real"]["trials"]
    assert len(trials) == 1 and trials["trial 0"]["epochs"] == 1  # its epoch recorded, as every trial's
    assert (out / "real" / "model" / "model.keras").is_file()
    assert (out / "real" / "trials").is_dir()  # the search's trials stay in the stage folder
    model = load_classifier(out / "real" / "model")
    assert model.engine == "autokeras" and model.classes == list(FER_CLASSES)
    probs = model.predict_proba(load_dataset(smileys)["test"].images[:4])
    assert probs.shape == (4, 7)


# --- predict ----------------------------------------------------------------------------


def test_predict_video_finds_and_classifies_faces(trained, demo_video, tmp_path, capsys):
    from fertransfer.demo.video import DemoVideoSpec, face_visible

    out = tmp_path / "pred"
    assert main(["predict", str(demo_video), "--model", str(trained), "--out", str(out), "--every", "6"]) == 0
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    spec = DemoVideoSpec(frames=96)
    frames_with_faces = {int(r["frame"]) for r in rows}
    assert frames_with_faces, "no face found in the demo video"
    assert all(face_visible(f, spec) for f in frames_with_faces)
    assert len(frames_with_faces) >= 0.7 * sum(face_visible(f, spec) for f in range(0, 96, 6))
    for r in rows:
        assert r["label"] in FER_CLASSES
        assert sum(float(r[f"p_{c}"]) for c in FER_CLASSES) == pytest.approx(1.0, abs=1e-3)
    assert (out / "lecture_annotated.mp4").stat().st_size > 0


def test_predict_folder_of_images_in_other_modes(trained, demo_video, tmp_path):
    import imageio.v2 as imageio

    folder = tmp_path / "photos"
    folder.mkdir()
    frame = imageio.get_reader(demo_video).get_data(0)
    write_png(folder / "colour.png", frame)
    write_png(folder / "gray.png", frame.mean(axis=2).astype(np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    assert main(["predict", str(folder), "--model", str(trained / "real"), "--out", str(out)]) == 0
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({r["source"] for r in rows}) == ["colour.png", "gray.png"]
    assert (out / "colour_png_annotated.jpg").is_file() and (out / "gray_png_annotated.jpg").is_file()


def test_predict_face_crops_without_detection(trained, smileys, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", str(smileys / "test" / "happy"), "--model", str(trained), "--out", str(out), "--faces"]) == 0
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((smileys / "test" / "happy").glob("*.jpg")))


def test_predict_errors_are_one_clear_line(trained, tmp_path, capsys):
    empty, out = tmp_path / "empty", ["--out", str(tmp_path / "pred")]
    empty.mkdir()
    assert main(["predict", str(empty), "--model", str(trained), *out]) == 1
    assert "no images in this folder" in capsys.readouterr().err
    assert main(["predict", str(empty), "--model", str(trained), "--classes", "happy", "sad", *out]) == 1
    err = capsys.readouterr().err
    assert "angry, disgust, fear, happy, sad, surprise, neutral" in err and "[happy, sad]" in err
    assert main(["predict", str(empty), "--model", str(tmp_path), *out]) == 1
    assert "no model.json" in capsys.readouterr().err


def test_cnn_learns_the_smileys(smileys, tmp_path):
    """A few epochs take the CNN far above the majority baseline (the smileys are easy)."""
    _, summary = run_classify(tmp_path, fer=str(smileys), epochs=8, width=16)
    real = summary["train_sets"]["real"]
    assert real["val_accuracy"] > 0.6 > summary["majority_baseline_accuracy"]["val"] + 0.2


def test_training_resumes_from_a_checkpoint(smileys):
    from fertransfer.expression.cnn import CnnConfig, train_cnn

    data = load_dataset(smileys)
    train, val = data["train"].subset(np.arange(64)), data["val"]
    config = CnnConfig(width=4, epochs=2, batch_size=32, patience=0, tta="center")
    states = []
    full = train_cnn(train.images, train.labels, val.images, val.labels, list(FER_CLASSES), config,
                     device="cpu", checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1, 2]
    resumed = train_cnn(train.images, train.labels, val.images, val.labels, list(FER_CLASSES), config,
                        device="cpu", resume=states[0])
    assert len(resumed.history) == 2 and resumed.history[0] == full.history[0]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-4)
    # the weight average is part of the state: it resumes too
    assert resumed.history[1]["val_loss_ema"] == pytest.approx(full.history[1]["val_loss_ema"], rel=1e-4)


def test_weight_average_is_scored_and_can_be_turned_off(smileys):
    from fertransfer.expression.cnn import CnnConfig, train_cnn

    data = load_dataset(smileys)
    train, val = data["train"].subset(np.arange(64)), data["val"]
    args = (train.images, train.labels, val.images, val.labels, list(FER_CLASSES))
    averaged = train_cnn(*args, CnnConfig(width=4, epochs=2, batch_size=32, patience=0, tta="center", ema=0.9))
    assert all("val_acc_ema" in row for row in averaged.history) and averaged.best_weights in ("raw", "ema")
    plain = train_cnn(*args, CnnConfig(width=4, epochs=2, batch_size=32, patience=0, tta="center", ema=0))
    assert not any("val_acc_ema" in row for row in plain.history) and plain.best_weights == "raw"


def test_resample_blur_softens_a_share_of_the_images():
    import torch

    from fertransfer.expression.cnn import random_resample

    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (40, 1, 48, 48), dtype=np.uint8))
    untouched = random_resample(batch, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(untouched, batch)
    softened = random_resample(batch, 1.0, torch.Generator().manual_seed(0))
    assert softened.dtype == torch.uint8 and softened.shape == batch.shape
    # noise loses contrast through a smaller size; the mean stays where it was
    contrast = (softened.float() - softened.float().mean(dim=(2, 3), keepdim=True)).abs().mean()
    assert contrast < 0.8 * (batch.float() - batch.float().mean(dim=(2, 3), keepdim=True)).abs().mean()
    assert abs(softened.float().mean() - batch.float().mean()) < 2.0
    half = random_resample(batch, 0.5, torch.Generator().manual_seed(0))
    changed = int((half != batch).flatten(1).any(1).sum())
    assert 5 <= changed <= 35


def test_training_with_resample_blur_records_it_and_differs(smileys):
    from fertransfer.expression.cnn import CnnConfig, train_cnn

    data = load_dataset(smileys)
    train, val = data["train"].subset(np.arange(64)), data["val"]
    args = (train.images, train.labels, val.images, val.labels, list(FER_CLASSES))
    plain = train_cnn(*args, CnnConfig(width=4, epochs=1, batch_size=32, patience=0, tta="center", ema=0))
    again = train_cnn(*args, CnnConfig(width=4, epochs=1, batch_size=32, patience=0, tta="center", ema=0))
    blurred = train_cnn(*args, CnnConfig(width=4, epochs=1, batch_size=32, patience=0, tta="center", ema=0,
                                         resample_blur=1.0))
    assert plain.history[0]["train_loss"] == again.history[0]["train_loss"]
    assert blurred.history[0]["train_loss"] != plain.history[0]["train_loss"]
    assert blurred.classifier.config.resample_blur == 1.0


def test_old_model_with_input_blur_still_loads(smileys, tmp_path):
    """Models saved while `input_blur` existed carry it in model.json and cnn.pt; it is ignored."""
    import torch

    from fertransfer.expression.cnn import CnnConfig, train_cnn
    from fertransfer.expression.models import save_classifier

    data = load_dataset(smileys)
    config = CnnConfig(width=4, epochs=1, batch_size=32, patience=0, tta="center")
    result = train_cnn(data["train"].images[:64], data["train"].labels[:64], data["val"].images, data["val"].labels,
                       list(FER_CLASSES), config, device="cpu")
    folder = tmp_path / "model"
    save_classifier(result.classifier, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["input_blur"] = 3.0
    (folder / "model.json").write_text(json.dumps(meta))
    state = torch.load(folder / "cnn.pt", weights_only=True)
    state["config"]["input_blur"] = 3.0
    torch.save(state, folder / "cnn.pt")
    loaded = load_classifier(folder)
    assert not hasattr(loaded.config, "input_blur")
    images = data["val"].images[:8]
    np.testing.assert_allclose(loaded.predict_proba(images), result.classifier.predict_proba(images), atol=1e-5)


# --- the person's faces (person_test) and `pipeline evaluate` -----------------------------


def write_person_set(source: Path, target: Path, size: int = 128, classes=FER_CLASSES) -> int:
    """Flat class folders of RGB crops at `size` px (as extract writes person_test/), drawn from a
    smiley class-folder set; returns the number of images."""
    import cv2

    count = 0
    for name in classes:
        (target / name).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / name).glob("*.jpg"))[:3]:
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            rgb = cv2.cvtColor(cv2.resize(gray, (size, size)), cv2.COLOR_GRAY2RGB)
            write_png(target / name / f"{path.stem}.png", rgb)
            count += 1
    return count


def test_person_test_is_scored_for_every_set_and_compared(smileys, tmp_path):
    from fertransfer.classify.stage import STAGE

    write_fake_augment_set(smileys, tmp_path / "augment")
    images = write_person_set(smileys / "train", tmp_path / "extract" / "person_test")
    disgust = len(list((tmp_path / "extract" / "person_test" / "disgust").iterdir()))
    options = {"train_sets": ["real", "real+synthetic"], "person_test": "extract", "leave_out": ["disgust"]}
    assert STAGE.upstream(ClassifyOptions(**options)) == ["extract", "augment"]
    out, summary = run_classify(tmp_path, {"augment": tmp_path / "augment", "extract": tmp_path / "extract"},
                                fer=str(smileys), **options)
    assert summary["evaluated_on"]["person"] == images - disgust  # left-out classes leave the person set too
    for name, slug in (("real", "real"), ("real+synthetic", "real_synthetic")):
        row = summary["train_sets"][name]
        assert 0.0 <= row["person_accuracy"] <= 1.0 and 0.0 <= row["person_macro_f1"] <= 1.0
        metrics = json.loads((out / slug / "metrics.json").read_text())
        assert metrics["person"]["images"] == images - disgust and "disgust" not in metrics["person"]["per_class"]
        assert (out / f"confusion_{slug}_person.png").read_bytes()[:4] == b"\x89PNG"
        assert f"confusion_{slug}_person.png" in metrics["pictures"]
    with open(out / "comparison.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["train_set", "train_images", "accuracy", "person_accuracy", "macro_f1",
                                 "person_macro_f1"]
    assert {"recall_happy", "person_recall_happy"} <= set(rows[0]) and "person_recall_disgust" not in rows[0]
    assert float(rows[1]["person_accuracy"]) == pytest.approx(summary["train_sets"]["real+synthetic"]["person_accuracy"],
                                                              abs=1e-4)
    assert "| test accuracy | person accuracy |" in (out / "comparison.md").read_text()
    assert "- person: accuracy" in (out / "report.md").read_text()
    assert set(json.loads((out / "metrics.json").read_text())["real"]) >= {"test", "person"}


def test_person_test_errors_come_before_training(smileys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StageError, match=r"person_test: .*empty: no class or split folders"):
        run_classify(tmp_path / "a", fer=str(smileys), person_test=str(empty))
    assert not (tmp_path / "a" / "classify.partial" / "real").exists()  # nothing trained
    (empty / "happy").mkdir()
    with pytest.raises(StageError, match=r"person_test: .*no images"):
        run_classify(tmp_path / "b", fer=str(smileys), person_test=str(empty))
    odd = tmp_path / "odd"
    write_person_set(smileys / "test", odd, size=48, classes=("happy", "sad"))
    (odd / "bored").mkdir()
    write_png(odd / "bored" / "x.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(StageError, match=r"\[bored, happy, sad\] are not the model's "
                                         r"\[angry, disgust, fear, happy, sad, surprise, neutral\]"):
        run_classify(tmp_path / "c", fer=str(smileys), person_test=str(odd), person_test_strict=True)
    (odd / "bored" / "x.png").unlink()
    (odd / "bored").rmdir()
    with pytest.raises(StageError, match=r"\[happy, sad\] are not the model's \[angry, disgust, fear, happy"):
        run_classify(tmp_path / "e", fer=str(smileys), person_test=str(odd), person_test_strict=True)
    with pytest.raises(StageError, match=r"person_test = \"extract\": .*person_test does not exist"):
        run_classify(tmp_path / "d", {"extract": tmp_path / "extract"}, fer=str(smileys), person_test="extract")


def test_person_test_path_is_checked_before_any_stage(smileys, tmp_path):
    from fertransfer.pipelines.config import ConfigError, missing_inputs
    from fertransfer.pipelines.runner import run_pipeline

    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run", "device": "cpu"},
                                           "data": {"fer": str(smileys)},
                                           "classify": {"person_test": "no/such/faces"}}))
    with pytest.raises(ConfigError, match=r"\[classify\].person_test: path not found: no/such/faces"):
        run_pipeline(load_config(config), "classify")
    assert not (tmp_path / "run").exists()
    config.write_text(default_config_text({"data": {"fer": str(smileys)}, "classify": {"person_test": "extract"}}))
    assert missing_inputs(load_config(config), ["classify"]) == []


def test_evaluate_scores_a_model_on_a_dataset(trained, smileys, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(smileys), "--model", str(trained / "real"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    assert result["part"] == "test split" and result["images"] == len(load_dataset(smileys)["test"])
    stage_metrics = json.loads((trained / "real" / "metrics.json").read_text())["test"]
    assert result["accuracy"] == pytest.approx(stage_metrics["accuracy"])  # the same model, the same PrivateTest
    assert f"accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}" in printed
    assert f"images {result['images']}" in printed and "recall per class: angry" in printed
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # Flat class folders (RGB, 128 px: converted to the model's gray 48 px) are scored whole, and
    # without --out nothing is written.
    faces = tmp_path / "faces"
    images = write_person_set(smileys / "test", faces)
    assert main(["evaluate", str(faces), "--model", str(trained)]) == 0
    printed = capsys.readouterr().out
    assert f"images {images}," in printed and "(whole set)" in printed and "written" not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "faces"]
    assert main(["evaluate", str(smileys), "--model", str(trained), "--split", "val"]) == 0
    assert f"images {len(load_dataset(smileys)['val'])}," in capsys.readouterr().out


def test_evaluate_strict_refuses_another_class_set(trained, smileys, tmp_path, capsys):
    faces = tmp_path / "faces"
    write_person_set(smileys / "test", faces, size=48, classes=("happy", "sad"))
    assert main(["evaluate", str(faces), "--model", str(trained), "--strict", "--out", str(tmp_path / "eval")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "[happy, sad]" in err and "[angry, disgust, fear, happy, sad, surprise, neutral]" in err
    assert not (tmp_path / "eval").exists()
    assert main(["evaluate", str(faces), "--model", str(trained), "--split", "test"]) == 1  # flat folders: no split
    assert main(["evaluate", str(faces), "--model", str(trained)]) == 0  # without --strict: scored on the two
    assert "recall per class: happy" in capsys.readouterr().out


def test_test_time_views_in_one_batch_equal_one_pass_per_view():
    """predict_proba sends all ten crops through the network at once; the average is the per-view one."""
    import torch
    import torch.nn.functional as F

    from fertransfer.expression.cnn import CnnClassifier, CnnConfig, FaceNet, standardise, test_views, to_tensor

    torch.manual_seed(0)
    config = CnnConfig(width=8, bf16="off")
    classifier = CnnClassifier(FaceNet(7, 1, 8).eval(), list(FER_CLASSES), 1, 48, config)
    images = np.random.default_rng(0).integers(0, 256, (23, 48, 48, 1), dtype=np.uint8)
    with torch.no_grad():
        views = test_views(to_tensor(images), config.crop, "tencrop")
        expected = sum(F.softmax(classifier.model(standardise(v)), dim=1) for v in views) / len(views)
    np.testing.assert_allclose(classifier.predict_proba(images, batch_size=40), expected.numpy(), atol=1e-5)
