"""Self-training on the person's footage (`[classify] pseudo_share`): the initial model's surest
readings of the footage, kept per predicted class, mixed into every fine-tuning batch."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fertransfer.classify.pseudo import pseudo_label, select_confident
from fertransfer.classify.stage import ClassifyOptions, _check
from fertransfer.data import FER_CLASSES, load_dataset
from fertransfer.expression.cnn import CnnConfig, train_cnn
from fertransfer.expression.models import predict_labels, save_classifier
from fertransfer.pipelines.options import DataOptions
from test_classify_protocol import TINY, run_classify
from test_person_product import write_fake_extract


def test_the_surest_share_of_each_predicted_class_is_kept():
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.8, 0.2, 0.0],
                      [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    # class 0: four faces, the surest two (0.9, 0.8); class 1 and class 2: one face each, always kept
    assert select_confident(probs, 0.5).tolist() == [0, 3, 4, 5]
    assert select_confident(probs, 1.0).tolist() == list(range(6))
    assert select_confident(probs, 0.01).tolist() == [0, 4, 5]
    with pytest.raises(ValueError, match="keep must be in"):
        select_confident(probs, 0)


def test_pseudo_labels_summary_and_the_agreement_check():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    images = np.arange(4 * 4, dtype=np.uint8).reshape(4, 2, 2, 1)
    result = pseudo_label(probs, images, ["a", "b", "c", "d"], ["x", "y"], keep=0.5,
                          folder_labels=["x", "x", "x", "contempt"])
    assert result.images.files == ["a", "b"] and result.images.labels.tolist() == [0, 1]
    assert np.array_equal(result.images.images, images[[0, 1]])
    summary = result.summary
    assert summary["footage_faces"] == 4 and summary["kept"] == 2
    assert summary["predicted"] == {"x": 2, "y": 2} and summary["kept_per_class"] == {"x": 1, "y": 1}
    assert summary["mean_confidence"] == {"all": 0.75, "kept": 0.85}
    # 'contempt' names no class of the model: left out of the check; of a, b, c two read x
    assert summary["agreement"] == {"all": {"faces": 3, "accuracy": round(2 / 3, 4)}, "kept": {"faces": 2, "accuracy": 0.5}}


def _split(smileys):
    data = load_dataset(smileys)
    return data["train"].subset(np.arange(64)), data["val"].subset(np.arange(20))


def test_training_draws_the_share_of_each_batch_from_the_pseudo_labelled_faces(smileys):
    train, val = _split(smileys)
    args = (train.images, train.labels, val.images, val.labels, list(FER_CLASSES))
    plain = train_cnn(*args, CnnConfig(**TINY, max_steps=2), device="cpu", seed=3)
    # given but off: the same run, the same draws
    off = train_cnn(*args, CnnConfig(**TINY, max_steps=2), device="cpu", seed=3, pseudo=(train.images[:5], train.labels[:5]))
    assert off.history[-1]["train_loss"] == plain.history[-1]["train_loss"]
    with pytest.raises(ValueError, match="pseudo_share is on but no pseudo-labelled images"):
        train_cnn(*args, CnnConfig(**TINY, max_steps=1, pseudo_share=0.5), device="cpu")
    # one noise face, always labelled 'happy', as most of every batch: the network learns to call it happy
    face = np.random.default_rng(0).integers(0, 256, (1, *train.images.shape[1:]), dtype=np.uint8)
    happy = FER_CLASSES.index("happy")
    config = CnnConfig(**{**TINY, "width": 8}, max_steps=30, eval_every=30, lr=0.05, pseudo_share=0.75)
    mixed = train_cnn(*args, config, device="cpu", seed=3, pseudo=(face, np.array([happy])))
    assert mixed.classifier.config.pseudo_share == 0.75
    assert predict_labels(mixed.classifier, face)[0].tolist() == [happy]
    assert mixed.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_the_stage_pseudo_labels_the_footage_and_fine_tunes_with_it(smileys, tmp_path):
    train, val = _split(smileys)
    base = train_cnn(train.images, train.labels, val.images, val.labels, list(FER_CLASSES),
                     CnnConfig(**TINY, max_steps=2), device="cpu").classifier
    save_classifier(base, tmp_path / "base" / "model")
    faces = write_fake_extract(smileys, tmp_path / "extract")
    out, summary = run_classify(tmp_path, {"extract": tmp_path / "extract"}, fer=str(smileys),
                                init=str(tmp_path / "base" / "model"), finetune_steps=2, train_limit=40,
                                pseudo_share=0.25, pseudo_keep=0.5)
    pseudo = summary["pseudo_labels"]
    assert pseudo["footage_faces"] == faces and 1 <= pseudo["kept"] <= faces
    assert sum(pseudo["kept_per_class"].values()) == pseudo["kept"]
    assert "25% of every batch the person's footage labelled by the initial model" in summary["protocol"]["description"]
    with open(out / "pseudo_labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == faces and sum(int(r["kept"]) for r in rows) == pseudo["kept"]
    assert "held_out.jpg" not in {r["file"] for r in rows}  # extract's test crops are never read
    training = json.loads((out / "real" / "metrics.json").read_text())["training"]
    assert training["pseudo_share"] == 0.25 and training["pseudo_faces"] == pseudo["kept"]
    assert pseudo["labeller"] == "the initial model"
    from fertransfer.pipelines.report import write_report

    (tmp_path / "classify").mkdir()
    (tmp_path / "classify" / "manifest.json").write_text(json.dumps({"summary": summary}))
    assert (f"Self-training: {pseudo['kept']} of {faces} footage faces kept as labels, read by the initial model"
            in write_report(tmp_path).read_text())
    # a second round: the self-trained model reads the footage
    again, summary = run_classify(tmp_path / "round2", {"extract": tmp_path / "extract"}, fer=str(smileys),
                                  init=str(tmp_path / "base" / "model"), finetune_steps=2, train_limit=40,
                                  pseudo_share=0.25, pseudo_model=str(out / "real" / "model"))
    assert summary["pseudo_labels"]["labeller"] == str(out / "real" / "model")
    assert f"labelled by the model {out / 'real' / 'model'}" in summary["protocol"]["description"]
    with open(again / "pseudo_labels.csv") as handle:
        second = {r["file"]: r["confidence"] for r in csv.DictReader(handle)}
    assert second != {r["file"]: r["confidence"] for r in rows}  # another reader, other readings


def test_pseudo_share_needs_a_model_to_label_with(smileys, tmp_path):
    from fertransfer.pipelines.config import ConfigError, default_config_text, load_config
    from fertransfer.pipelines.runner import check_before_run

    problems = _check(ClassifyOptions(pseudo_share=0.2), tmp_path, DataOptions())
    assert len(problems) == 1 and problems[0].startswith("pseudo_share: self-training fine-tunes the cnn engine from `init`")
    assert _check(ClassifyOptions(pseudo_share=0.2, init="real"), tmp_path, DataOptions()) == []
    assert _check(ClassifyOptions(pseudo_model="m"), tmp_path, DataOptions()) == [
        "pseudo_model: read only by self-training; set pseudo_share > 0 or remove it"]
    train, val = _split(smileys)
    two = train_cnn(train.images, train.labels % 2, val.images, val.labels % 2, ["a", "b"],
                    CnnConfig(**TINY, max_steps=1), device="cpu").classifier
    save_classifier(two, tmp_path / "two")
    [problem] = _check(ClassifyOptions(pseudo_share=0.2, init="real", pseudo_model=str(tmp_path / "two")), tmp_path,
                       DataOptions())
    assert problem == (f"pseudo_model: {tmp_path / 'two'}: the model's classes [a, b] are not this run's "
                       f"[{', '.join(FER_CLASSES)}]")
    # found before any stage runs, as is a share of the whole batch
    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run"}, "data": {"fer": str(smileys)},
                                           "classify": {"pseudo_share": 0.2}}))
    with pytest.raises(ConfigError, match=r"pseudo_share: self-training fine-tunes"):
        check_before_run(load_config(config), ["classify"])
    config.write_text(default_config_text({"run": {"dir": "run"}, "data": {"fer": str(smileys)},
                                           "classify": {"pseudo_share": 1.0, "init": "real"}}))
    with pytest.raises(ConfigError, match=r"pseudo_share"):
        check_before_run(load_config(config), ["classify"])


def test_the_report_says_what_self_training_read():
    from fertransfer.pipelines.report import _pseudo_labels_text

    assert _pseudo_labels_text(None) == ""
    text = _pseudo_labels_text({"kept": 3, "footage_faces": 6, "labeller": "the initial model",
                                "kept_per_class": {"angry": 2, "sad": 0, "happy": 1},
                                "agreement": {"kept": {"faces": 2, "accuracy": 0.5}}})
    assert "3 of 6 footage faces kept as labels, read by the initial model (angry 2, happy 1)." in text
    assert "50.0% of the 2 kept faces whose video sits in a class folder carry that folder&#x27;s class" in text
