"""Issue 22, items 3 and 4: test sets with a subset of the classes, the person model as the
product (person_model/, `predict`/`serve --run`), and footage without labels (the predicted
distribution and a timeline per video, in the report and beside `predict`'s CSV)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from fertransfer.classify.evaluate import score
from fertransfer.classify.timeline import plot_timeline, timeline_bins
from fertransfer.data import FER_CLASSES, load_labelled_set, read_images, write_png
from fertransfer.expression.models import load_classifier, predict_labels
from fertransfer.pipelines.cli import build_parser, main
from fertransfer.pipelines.stage import StageError
from test_classify import run_classify, trained, write_person_set  # noqa: F401 (trained: a fixture)

CK_CLASSES = tuple(c for c in FER_CLASSES if c != "neutral")  # CK+48: no neutral, and a contempt folder


def write_ck_like(smileys: Path, target: Path) -> int:
    """Class folders like CK+48: FER's classes but neutral, plus 'contempt' (two images); returns
    the images of known classes."""
    images = write_person_set(smileys / "test", target, size=48, classes=CK_CLASSES)
    (target / "contempt").mkdir()
    for i in range(2):
        write_png(target / "contempt" / f"c{i}.png", np.full((48, 48), 90 + i, np.uint8))
    return images


@pytest.fixture(scope="module")
def trained_run(trained) -> Path:
    """test_classify's classify stage run through the runner (real only): its run folder."""
    return trained.parent


# --- subsets of the classes -----------------------------------------------------------------


def test_score_over_the_classes_present():
    """A known case: two classes present, one answer of an absent class (neutral) is an error."""
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 6, 1, 1])
    m = score(labels, predicted, list(FER_CLASSES), majority_label=0)
    assert m["accuracy"] == pytest.approx(0.75)
    assert list(m["per_class"]) == ["angry", "disgust"]
    assert m["per_class"]["angry"]["recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)  # angry F1 2/3, disgust 1
    assert m["absent_classes"] == ["fear", "happy", "sad", "surprise", "neutral"]
    assert m["predicted_absent"] == 1
    assert m["confusion_rows"] == ["angry", "disgust"]
    assert m["confusion_matrix"] == [[1, 0, 0, 0, 0, 0, 1], [0, 2, 0, 0, 0, 0, 0]]
    full = score(np.arange(7), np.arange(7), list(FER_CLASSES), 0)  # every class present: as before
    assert full["absent_classes"] == [] and len(full["confusion_matrix"]) == 7 and full["macro_f1"] == 1.0


def test_evaluate_scores_a_ck_like_set_against_a_seven_class_model(trained_run, smileys, tmp_path, capsys, caplog):
    faces, out = tmp_path / "ck", tmp_path / "eval"
    images = write_ck_like(smileys, faces)
    model = trained_run / "classify" / "real" / "model"
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(faces), "--model", str(model), "--out", str(out)]) == 0
    assert "left out: contempt (2 images)" in caplog.text  # the warning names the class and its count
    printed = capsys.readouterr().out
    assert "left out (classes the model does not know): contempt 2 images" in printed
    assert "not in this set: neutral" in printed
    result = json.loads((out / "evaluation.json").read_text())
    assert result["images"] == images and result["left_out"] == {"contempt": 2}
    assert list(result["per_class"]) == list(CK_CLASSES) and result["absent_classes"] == ["neutral"]
    # the figures, recomputed from the model's own answers on the same images
    known = tmp_path / "known"  # the same images without contempt, read by the data layer alone
    shutil.copytree(faces, known, ignore=shutil.ignore_patterns("contempt"))
    data, _ = load_labelled_set(known, channels=1, size=48)
    labels = data.labels
    predicted, _ = predict_labels(load_classifier(model), data.images)
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == labels)))
    present = list(range(6))
    assert result["macro_f1"] == pytest.approx(f1_score(labels, predicted, labels=present, average="macro",
                                                        zero_division=0))
    assert result["predicted_absent"] == int(np.sum(predicted == 6))
    assert np.array(result["confusion_matrix"]).shape == (6, 7)  # rows: present; columns: every model class
    assert np.array(result["confusion_matrix"])[:, 6].sum() == result["predicted_absent"]
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # --strict keeps the old refusal, naming both lists, and writes nothing
    assert main(["evaluate", str(faces), "--model", str(model), "--strict", "--out", str(tmp_path / "strict")]) == 1
    err = capsys.readouterr().err
    assert "[angry, contempt, disgust, fear, happy, sad, surprise]" in err
    assert "[angry, disgust, fear, happy, sad, surprise, neutral]" in err and not (tmp_path / "strict").exists()


def test_a_set_of_only_unknown_classes_is_one_clear_error(trained_run, tmp_path, capsys):
    faces = tmp_path / "odd"
    (faces / "contempt").mkdir(parents=True)
    write_png(faces / "contempt" / "x.png", np.zeros((48, 48), np.uint8))
    assert main(["evaluate", str(faces), "--model", str(trained_run / "classify")]) == 1
    assert "no images of the model's classes" in capsys.readouterr().err


# --- the stage: person_test subset, the person model, the footage ---------------------------


def write_fake_extract(smileys: Path, extract: Path) -> int:
    """extract's output for two 'videos' of unlabelled footage: faces/ crops and faces.csv."""
    (extract / "faces").mkdir(parents=True)
    rows = []
    for v, video in enumerate(("/data/talk.mp4", "/data/other/talk.mp4")):  # same name twice
        for i, path in enumerate(sorted((smileys / "test" / FER_CLASSES[3 + v]).glob("*.jpg"))[:6]):
            name = f"talk{v}_{i:06d}.jpg"
            (extract / "faces" / name).write_bytes(path.read_bytes())
            rows.append({"file": name, "video": video, "frame": i * 5, "time_s": f"{i * 0.2:.3f}", "label": "",
                         "split": "footage"})
    rows.append({"file": "held_out.jpg", "video": "/data/clip.mp4", "frame": 0, "time_s": "0", "label": "happy",
                 "split": "test"})  # not footage: never predicted
    with open(extract / "faces.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows) - 1


def test_stage_scores_a_subset_and_ships_the_person_model_with_footage(smileys, tmp_path):
    from fertransfer.classify.stage import STAGE, ClassifyOptions

    person = tmp_path / "person"
    images = write_ck_like(smileys, person)
    faces = write_fake_extract(smileys, tmp_path / "extract")
    options = {"fer": str(smileys), "person_test": str(person), "footage": "extract"}
    assert STAGE.upstream(ClassifyOptions(person_test=str(person), footage="extract")) == ["extract"]
    out, summary = run_classify(tmp_path, {"extract": tmp_path / "extract"}, **options)
    metrics = json.loads((out / "real" / "metrics.json").read_text())["person"]
    assert metrics["images"] == images and "neutral" not in metrics["per_class"]
    assert metrics["absent_classes"] == ["neutral"] and len(metrics["confusion_matrix"]) == 6
    assert "no neutral; left out: contempt (2)" in (out / "comparison.md").read_text()
    assert "| neutral |" in (out / "report.md").read_text()  # the FER row stays, the person cells say '-'
    # the product: real (real+synthetic was not trained), a copy of its model, a card with the evidence
    product = summary["person_model"]
    assert product["set"] == "real" and product["path"] == "person_model"
    assert (out / "person_model" / "model.json").read_bytes() == (out / "real" / "model" / "model.json").read_bytes()
    card = (out / "person_model" / "README.md").read_text()
    assert "# Person model: real" in card and "chosen before any score was seen" in card
    assert "| **real** (this model) |" in card and "## The set's model card" in card
    # the footage: every footage face predicted by the person model, one timeline per video
    footage = summary["footage"]
    assert footage["faces"] == faces and sum(footage["per_class"].values()) == faces
    assert sorted(footage["videos"]) == ["talk", "talk_2"] and footage["videos"]["talk"]["faces"] == 6
    assert footage["pictures"] == ["footage/distribution.png", "footage/timeline_talk.png",
                                   "footage/timeline_talk_2.png"]
    for picture in footage["pictures"]:
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    with open(out / "footage" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == faces and "held_out.jpg" not in {r["file"] for r in rows}
    crops, _, _ = read_images([tmp_path / "extract" / "faces" / r["file"] for r in rows], channels=1, size=48)
    predicted = predict_labels(load_classifier(out / "person_model"), crops)[0]
    assert [r["label"] for r in rows] == [FER_CLASSES[i] for i in predicted]


def test_person_model_option_is_checked_and_chosen_by_name(smileys, tmp_path):
    from fertransfer.classify.product import person_model_set
    from fertransfer.classify.stage import ClassifyOptions, _check
    from fertransfer.pipelines.options import DataOptions

    assert person_model_set("", ["real", "balanced", "real+synthetic"])[0] == "real+synthetic"
    assert person_model_set("", ["balanced", "real"])[0] == "real"
    assert person_model_set("", ["balanced"])[0] == "balanced"
    assert person_model_set("balanced", ["real", "balanced"]) == ("balanced",
                                                                  "configured: [classify] person_model = \"balanced\"")
    problems = _check(ClassifyOptions(train_sets=["real"], person_model="balanced"), tmp_path, DataOptions())
    assert problems == ["person_model: 'balanced' is not one of train_sets ['real']"]
    assert _check(ClassifyOptions(train_sets=["real", "real+synthetic"], person_model="real_synthetic"), tmp_path, DataOptions()) == []
    assert _check(ClassifyOptions(footage="faces/"), tmp_path, DataOptions()) == ['footage: "extract" or empty, got "faces/"']


def test_the_card_says_when_another_set_scored_higher_on_the_person():
    from fertransfer.classify.product import caveats

    results = {"real": {"person": {"accuracy": 0.5}}, "real+synthetic": {"person": {"accuracy": 0.4}}}
    [note] = caveats(results, "real+synthetic")
    assert "'real' scored higher (50.0% against 40.0%)" in note and "was not used to choose" in note
    assert "scored highest" in caveats(results, "real")[0]
    assert "not measured" in caveats({"real": {}}, "real")[0]


# --- predict and serve take the run's person model ------------------------------------------


def test_predict_run_uses_the_person_model_and_draws_the_timeline(trained_run, demo_video, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", str(demo_video), "--run", str(trained_run), "--out", str(out), "--every", "12"]) == 0
    printed = capsys.readouterr().out
    assert f"timeline: {out / 'timeline_lecture.png'}" in printed
    assert (out / "timeline_lecture.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "predictions.csv") as handle:
        assert list(csv.DictReader(handle))
    assert main(["predict", str(demo_video), "--out", str(out)]) == 1
    assert "no model: pass --model MODEL, or --run RUN" in capsys.readouterr().err
    assert main(["predict", str(demo_video), "--run", str(tmp_path), "--out", str(out)]) == 1
    assert "no person model" in capsys.readouterr().err


def test_serve_run_takes_the_person_model(trained_run, tmp_path):
    from fertransfer.classify.cli import chosen_model

    args = build_parser().parse_args(["serve", "--run", str(trained_run)])
    assert args.model is None
    classifier = chosen_model(args)
    assert list(classifier.classes) == list(FER_CLASSES)
    with pytest.raises(StageError, match="not the expected"):
        chosen_model(build_parser().parse_args(["serve", "--run", str(trained_run), "--classes", "happy", "sad"]))
    with pytest.raises(StageError, match="no person model"):
        chosen_model(build_parser().parse_args(["serve", "--run", str(tmp_path)]))


def test_timeline_bins_average_faces_and_leave_gaps():
    times = np.array([0.0, 0.1, 0.2, 1.0])
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    edges, means = timeline_bins(times, probs, duration=1.2, max_bins=4)
    assert edges[0] == 0 and edges[-1] >= 1.2
    width = edges[1] - edges[0]
    assert width == pytest.approx(0.3)  # duration / max_bins beats the 0.1 s between frames
    np.testing.assert_allclose(means[:, 0], [2 / 3, 1 / 3])  # the first three faces, averaged
    assert np.isnan(means[0, 1]) and np.isnan(means[0, 2])  # no face between 0.3 and 0.9 s
    assert means[1, 3] == 1.0


def test_timeline_of_a_video_without_faces_is_still_drawn(tmp_path):
    path = plot_timeline(np.zeros(0), np.zeros((0, 7)), list(FER_CLASSES), tmp_path / "t.png", "empty", duration=3)
    assert path.read_bytes()[:4] == b"\x89PNG"
