"""The person benchmark's protocol: step budgets, fine-tuning from a model, seeds, per-clip
figures and clip-bootstrap intervals (issue 22), on tiny generated data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fertransfer.classify.clips import Clips, clip_name, find_clips, person_statistics
from fertransfer.data import FER_CLASSES, load_dataset, write_png
from fertransfer.expression.cnn import CnnConfig, train_cnn
from fertransfer.expression.models import save_classifier
from fertransfer.pipelines.config import ConfigError, default_config_text, load_config
from fertransfer.pipelines.runner import check_before_run
from fertransfer.pipelines.stage import StageError

TINY = {"width": 4, "batch_size": 32, "patience": 0, "tta": "center", "ema": 0}


# --- clips and the bootstrap (no training) ------------------------------------------------


def test_clip_names_follow_extract_file_names():
    assert clip_name("x/person_test/angry/M030_front_angry_level3_001_000045.jpg") == "angry/M030_front_angry_level3_001"
    assert clip_name("person_test/sad/clip-2_0007.png") == "sad/clip-2"
    assert clip_name("faces/happy/portrait.jpg") is None


def test_frames_are_grouped_into_clips_and_weak_sets_are_named():
    files = [f"t/{c}/{c}_clip_{f:06d}.jpg" for c in ("angry", "happy") for f in range(3)]
    clips = find_clips(files, np.array([0, 0, 0, 3, 3, 3]), len(FER_CLASSES))
    assert clips.names == ["angry/angry_clip", "happy/happy_clip"]
    assert clips.index.tolist() == [0, 0, 0, 1, 1, 1] and clips.labels.tolist() == [0, 3]
    assert any("one clip per class (2 clips)" in w and "wide" in w for w in clips.warnings)
    flat = find_clips(["t/angry/a.jpg", "t/angry/b.jpg", "t/happy/c.jpg"], np.array([0, 0, 3]), len(FER_CLASSES))
    assert flat.count == 3 and any("each is counted as its own clip" in w for w in flat.warnings)


def _probs(predicted: list[int], classes: int = 3) -> np.ndarray:
    probs = np.full((len(predicted), classes), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return probs


def test_identical_predictions_give_an_interval_of_width_zero():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    clips = Clips(np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3]), ["a", "b", "c", "d"], np.array([0, 1, 2, 2]), [])
    same = _probs([0, 1, 0, 1, 2, 1, 2, 0, 2, 2])
    stats = person_statistics(labels, {"real": [same, same], "synthetic": [same, same]}, clips, draws=500, seed=1)
    for level in ("frames", "clips_majority", "clips_mean_probability"):
        low, high = stats["synthetic"][level]["difference"]["interval"]
        assert low == high == 0.0
        assert stats["synthetic"][level]["difference"]["mean"] == 0.0
        assert stats["synthetic"][level]["difference"]["std"] == 0.0
    # all right: the accuracy's interval is one point too
    perfect = person_statistics(labels, {"real": [_probs(labels.tolist())]}, clips, draws=200)
    assert perfect["real"]["frames"]["interval"] == [1.0, 1.0] and perfect["real"]["frames"]["std"] is None


def test_the_bootstrap_resamples_clips_not_frames():
    """Two clips of 10 frames, one read right and one wrong: a resample holds whole clips, so the
    per-frame accuracy of a draw is 0, 1/2 or 1, never anything between."""
    from fertransfer.classify.clips import accuracy_draws, clip_counts

    labels = np.array([0] * 10 + [1] * 10)
    clips = Clips(np.repeat([0, 1], 10), ["a", "b"], np.array([0, 1]), [])
    correct = np.array([[1.0] * 10 + [0.0] * 10])
    draws = accuracy_draws(correct, "frames", clips, clip_counts(2, 400, seed=0))[:, 0]
    assert set(np.round(draws, 6)) == {0.0, 0.5, 1.0}
    stats = person_statistics(labels, {"real": [_probs([0] * 10 + [0] * 10, 2)]}, clips, draws=400)
    assert stats["real"]["frames"]["interval"] == [0.0, 1.0] and stats["real"]["frames"]["mean"] == 0.5


def test_per_clip_labels_by_majority_and_by_mean_probability():
    from fertransfer.classify.clips import clip_predictions

    clips = Clips(np.array([0, 0, 0, 1, 1]), ["a", "b"], np.array([0, 1]), [])
    probs = np.array([[0.6, 0.4], [0.55, 0.45], [0.0, 1.0],  # majority 0, mean probability 1
                      [0.2, 0.8], [0.9, 0.1]])  # a tie: the mean probability decides (0)
    by_clip = clip_predictions(probs, clips)
    assert by_clip["clips_majority"].tolist() == [0, 0]
    assert by_clip["clips_mean_probability"].tolist() == [1, 0]
    labels = np.array([0, 0, 0, 1, 1])
    stats = person_statistics(labels, {"real": [probs]}, clips, draws=0)
    assert stats["real"]["frames"]["mean"] == pytest.approx(3 / 5)
    assert stats["real"]["clips_majority"]["mean"] == 0.5 and stats["real"]["clips_mean_probability"]["mean"] == 0.0
    assert "interval" not in stats["real"]["frames"]
    # a model that decides otherwise than by the most probable class (two-tier): its own labels count
    decided = {"real": [np.array([0, 0, 0, 1, 1])]}
    stats = person_statistics(labels, {"real": [probs]}, clips, draws=0, predicted=decided)
    assert stats["real"]["frames"]["mean"] == 1.0 and stats["real"]["clips_majority"]["mean"] == 1.0


# --- the training loop: step budget and fine-tuning ----------------------------------------


@pytest.fixture(scope="module")
def smiley_data(smileys):
    return load_dataset(smileys)


def test_step_budget_is_the_same_for_sets_of_any_size(smiley_data):
    train, val = smiley_data["train"], smiley_data["val"].subset(np.arange(20))
    config = CnnConfig(**TINY, max_steps=5, eval_every=2)
    runs = [train_cnn(train.images[:n], train.labels[:n], val.images, val.labels, list(FER_CLASSES), config,
                      device="cpu") for n in (40, 150)]
    for result in runs:
        assert result.steps == 5 and result.stopped == "steps"
        assert [row["step"] for row in result.history] == [2, 4, 5]  # every eval_every steps, and at the end
    assert runs[0].history[-1]["lr"] == pytest.approx(runs[1].history[-1]["lr"])  # one schedule for both
    assert runs[0].history[-1]["epoch"] == pytest.approx(5 / 2) and runs[1].history[-1]["epoch"] == pytest.approx(1.0)


def test_fine_tuning_starts_from_the_initial_weights(smiley_data):
    train, val = smiley_data["train"].subset(np.arange(64)), smiley_data["val"].subset(np.arange(20))
    args = (train.images, train.labels, val.images, val.labels, list(FER_CLASSES))
    base = train_cnn(*args, CnnConfig(**TINY, max_steps=3), device="cpu", seed=5).classifier
    untouched = train_cnn(*args, CnnConfig(**TINY, epochs=0), device="cpu", init=base)  # no steps: the init itself
    for key, value in base.model.state_dict().items():
        assert torch.equal(untouched.classifier.model.state_dict()[key], value), key
    tuned = train_cnn(*args, CnnConfig(**TINY, max_steps=2, lr=1e-4), device="cpu", seed=1, init=base).classifier
    scratch = train_cnn(*args, CnnConfig(**TINY, max_steps=2, lr=1e-4), device="cpu", seed=1).classifier
    weight = "features.0.0.weight"
    start = base.model.state_dict()[weight]
    assert (tuned.model.state_dict()[weight] - start).abs().max() < 0.01
    assert (scratch.model.state_dict()[weight] - start).abs().max() > 0.05
    with pytest.raises(ValueError, match=r"initial model has classes \[angry.*this training has \[a, b\]"):
        train_cnn(train.images, train.labels % 2, val.images, val.labels % 2, ["a", "b"], CnnConfig(**TINY, max_steps=1),
                  device="cpu", init=base)


def test_fine_tuning_can_hold_batchnorm_statistics(smiley_data):
    train, val = smiley_data["train"].subset(np.arange(64)), smiley_data["val"].subset(np.arange(20))
    args = (train.images, train.labels, val.images, val.labels, list(FER_CLASSES))
    base = train_cnn(*args, CnnConfig(**TINY, max_steps=3), device="cpu", seed=5).classifier
    start = base.model.state_dict()
    statistics = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert statistics
    for freeze in (True, False):
        tuned = train_cnn(*args, CnnConfig(**TINY, max_steps=2, lr=0.01, freeze_batchnorm=freeze), device="cpu",
                          seed=1, init=base).classifier.model.state_dict()
        held = [torch.equal(tuned[k], start[k]) for k in statistics]
        assert all(held) if freeze else not any(held)
        # the norms' scale still learns, frozen or not
        assert not torch.equal(tuned["features.0.1.weight"], start["features.0.1.weight"])


# --- the stage: seeds, init, per-clip figures ------------------------------------------------


def write_person_clips(source: Path, target: Path, clips_per_class: int = 2, frames: int = 3) -> int:
    """person_test/<class>/<clip>_<frame>.png as extract writes it, `frames` smileys per clip."""
    data = load_dataset(source)["test"]
    count = 0
    for label, name in enumerate(FER_CLASSES):
        images = data.images[data.labels == label]
        (target / name).mkdir(parents=True, exist_ok=True)
        for c in range(clips_per_class):
            for f in range(frames):
                write_png(target / name / f"{name}_clip{c}_{f:06d}.png", images[(c * frames + f) % len(images)])
                count += 1
    return count


def run_classify(tmp: Path, upstream: dict | None = None, seed: int = 0, **options) -> tuple[Path, dict]:
    """test_classify's direct call of the stage, with this file's tiny CNN."""
    import test_classify

    return test_classify.run_classify(tmp, upstream, seed, **{**TINY, **options})


def test_adapt_protocol_over_seeds_with_clip_intervals(smileys, tmp_path):
    from test_classify import write_fake_augment_set

    write_fake_augment_set(smileys, tmp_path / "augment")
    frames = write_person_clips(smileys, tmp_path / "extract" / "person_test")
    out, summary = run_classify(tmp_path, {"augment": tmp_path / "augment", "extract": tmp_path / "extract"},
                                fer=str(smileys), train_sets=["real", "real+synthetic"], person_test="extract",
                                init="real", steps=4, finetune_steps=3, finetune_lr=0.001, seeds=[0, 1],
                                bootstrap=200, train_limit=60)
    assert (out / "init" / "model" / "model.json").is_file()  # the real-FER model every set starts from
    for slug in ("real", "real_synthetic"):
        assert (out / slug / "model" / "model.json").is_file() and (out / slug / "seed_1" / "model" / "model.json").is_file()
        for folder in (out / slug, out / slug / "seed_1"):
            metrics = json.loads((folder / "metrics.json").read_text())
            assert metrics["training"]["steps"] == 3 and metrics["training"]["stopped"] == "steps"
    assert summary["protocol"]["seeds"] == [0, 1] and summary["protocol"]["init"] == "real"
    assert summary["protocol"]["initial_model"]["test_accuracy"] >= 0
    assert summary["person_clips"]["clips"] == 2 * len(FER_CLASSES) and summary["person_clips"]["warnings"] == []
    assert summary["evaluated_on"]["person"] == frames
    row = summary["train_sets"]["real+synthetic"]
    assert row["seeds"] == 2 and row["test_accuracy_std"] is not None
    for level in ("frames", "clips_majority", "clips_mean_probability"):
        low, high = row[f"person_{level}"]["interval"]
        assert 0 <= low <= row[f"person_{level}"]["mean"] <= high <= 1
        assert set(row[f"person_{level}_vs_real"]) == {"mean", "std", "interval"}
    seeds_metrics = [json.loads((out / "real_synthetic" / f).read_text())["person"]["accuracy"]
                     for f in ("metrics.json", "seed_1/metrics.json")]
    assert row["person_accuracy"] == pytest.approx(np.mean(seeds_metrics), abs=1e-4)
    with open(out / "comparison.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:4] == ["train_set", "train_images", "accuracy", "person_accuracy"]
    assert {"test_accuracy_std", "person_frames_ci_low", "person_clips_majority_vs_real_ci_high"} <= set(rows[1])
    table = (out / "comparison.md").read_text()
    assert "Mean over 2 seeds" in table and "adapt: every set fine-tuned from a model trained here" in table
    assert "Δ person clips (majority)" in table
    assert (out / "comparison_seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert "over_seeds" in json.loads((out / "metrics.json").read_text())["real"]
    # report.html's headline carries the same figures (built from the stage's manifest summary)
    from fertransfer.pipelines.report import headline_text, write_report

    (tmp_path / "classify").mkdir()
    (tmp_path / "classify" / "manifest.json").write_text(json.dumps({"summary": summary}))
    page = write_report(tmp_path).read_text()
    frames = row["person_frames"]
    assert f"{100 * frames['mean']:.1f} ± {100 * frames['std']:.1f} [{100 * frames['interval'][0]:.1f}, " in page
    assert "&Delta; person (clips, majority)" in page and "paired by seed" in page
    assert any(line.startswith("real+synthetic: test accuracy") and "(vs real " in line
               for line in headline_text(tmp_path))


def test_init_from_a_model_folder_and_its_mismatch(smileys, tmp_path, smiley_data):
    train, val = smiley_data["train"].subset(np.arange(64)), smiley_data["val"].subset(np.arange(20))
    base = train_cnn(train.images, train.labels, val.images, val.labels, list(FER_CLASSES), CnnConfig(**TINY, max_steps=2),
                     device="cpu").classifier
    save_classifier(base, tmp_path / "base" / "model")
    out, summary = run_classify(tmp_path / "a", fer=str(smileys), init=str(tmp_path / "base" / "model"),
                                finetune_steps=2, train_limit=40)
    assert summary["protocol"]["initial_model"]["model"] == str(tmp_path / "base" / "model")
    assert summary["train_sets"]["real"]["steps"] == 2 and summary["train_sets"]["real"]["seeds"] == 1
    # finetune_batchnorm = "real": the same fine-tuning, then BatchNorm's statistics re-estimated on real FER
    again, summary = run_classify(tmp_path / "reestimated", fer=str(smileys), init=str(tmp_path / "base" / "model"),
                                  finetune_steps=2, train_limit=40, finetune_batchnorm="real")
    assert "statistics re-estimated on real FER after" in summary["protocol"]["description"]
    metrics = json.loads((again / "real" / "metrics.json").read_text())
    assert metrics["training"]["batchnorm"] == f"re-estimated on {len(smiley_data['train'])} real FER train images"
    from fertransfer.expression.models import load_classifier

    plain, reestimated = (load_classifier(o / "real" / "model").model.state_dict() for o in (out, again))
    assert torch.equal(plain["features.0.0.weight"], reestimated["features.0.0.weight"])
    assert not torch.equal(plain["features.0.1.running_mean"], reestimated["features.0.1.running_mean"])
    with pytest.raises(StageError, match=r"init: .*model's classes \[angry.*neutral\] at 48 px, 1 channel\(s\) are not "
                                         r"this run's \[angry.*neutral\] at 40 px"):
        run_classify(tmp_path / "b", fer=str(smileys), init=str(tmp_path / "base" / "model"), size=40)
    # the same found before any stage runs, with the bad seeds
    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run"}, "data": {"fer": str(smileys)}, "classify": {
        "init": str(tmp_path / "base"), "leave_out": ["disgust"], "seeds": []}}))
    with pytest.raises(ConfigError) as error:
        check_before_run(load_config(config), ["classify"])
    text = str(error.value)
    assert "[classify].seeds: empty" in text
    assert "are not this run's [angry, fear, happy, sad, surprise, neutral]" in text
    config.write_text(default_config_text({"run": {"dir": "run"}, "data": {"fer": str(smileys)},
                                           "classify": {"seeds": [0, -1]}}))
    with pytest.raises(ConfigError, match=r"\[classify\].seeds: a seed must not be negative, got \[-1\]"):
        check_before_run(load_config(config), ["classify"])
    with pytest.raises(StageError, match=r"seeds: empty"):
        run_classify(tmp_path / "c", fer=str(smileys), seeds=[])


def test_old_configs_train_one_seed_in_the_old_layout(smileys, tmp_path):
    out, summary = run_classify(tmp_path, fer=str(smileys), epochs=1, train_limit=40, seed=3)
    assert summary["protocol"] == {"init": "scratch", "seeds": [3],
                                   "description": "scratch: every set from random weights, 1 epochs at peak lr 0.05"}
    assert not list(out.glob("real/seed_*")) and (out / "real" / "model" / "model.json").is_file()
    assert summary["train_sets"]["real"]["test_accuracy_std"] is None
