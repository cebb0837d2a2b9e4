"""The person score: its domain classifier, the gray resize, bad input (the stage's use: test_cyclegan.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fertransfer.cyclegan.person_score import (
    MIN_CROPS,
    PersonScoreConfig,
    PersonScorer,
    blends,
    blends_note,
    crops_warning,
    gray_resize,
    person_score_by_class,
    split_control,
    train_person_scorer,
)

FAST = PersonScoreConfig(steps=80, width=8, batch_size=16)


def faces(count: int, seed: int, person: bool, size: int = 40, channels: int = 1) -> np.ndarray:
    """Smooth random 'faces'; the person's all carry a dark band across the eyes and a light chin."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = cv2.resize(rng.integers(60, 200, (6, 6), dtype=np.uint8), (size, size)).astype(np.int16)
        if person:
            image[size // 4 : size // 2] -= 50
            image[3 * size // 4 :] += 50
        image = np.clip(image, 0, 255).astype(np.uint8)
        out.append(np.repeat(image[..., None], channels, axis=2))
    return np.stack(out)


def test_gray_resize_takes_colour_and_resolution_away():
    small = faces(3, 0, False, size=48)
    large = np.stack([cv2.resize(im, (96, 96), interpolation=cv2.INTER_LINEAR) for im in small])[..., None]
    rgb = np.repeat(small, 3, axis=3)
    out = gray_resize(small, 64, 32)
    assert out.shape == (3, 32, 32, 1) and out.dtype == np.uint8
    assert np.array_equal(gray_resize(rgb, 64, 32), out)  # an RGB copy of a gray face: the same input
    assert np.abs(gray_resize(large, 64, 32).astype(int) - out).mean() < 3  # 48 or 96 px: (almost) the same


def test_the_classifier_tells_the_person_from_fer_and_its_controls_say_so():
    person, fer = faces(40, 1, True), faces(200, 2, False, size=48)
    scorer, info = train_person_scorer(person, fer, via_size=32, config=FAST)
    assert info["person_train"] + info["person_control"] == 40 and info["person_control"] == 12
    assert info["person_control_score"] >= 0.9  # crops it never trained on
    assert scorer.share(faces(100, 3, False, size=48)) <= 0.1  # FER faces it never trained on
    assert scorer.share(faces(50, 4, True, size=64, channels=3)) >= 0.9  # the person, RGB, another size
    # Seeded: trained again, the same probabilities; saved and loaded, the same scorer.
    again, _ = train_person_scorer(person, fer, via_size=32, config=FAST)
    probe = faces(20, 5, True)
    assert np.array_equal(again.probabilities(probe), scorer.probabilities(probe))
    loaded = PersonScorer.from_state_dict(scorer.state_dict())
    assert np.allclose(loaded.probabilities(probe), scorer.probabilities(probe))


def test_person_score_per_class():
    person, fer = faces(30, 1, True), faces(120, 2, False)
    scorer, _ = train_person_scorer(person, fer, via_size=32, config=FAST)
    images = np.concatenate([faces(10, 6, True), faces(10, 7, False)])
    labels = np.array([0] * 10 + [2] * 10)
    result = person_score_by_class(scorer, images, labels, ["angry", "disgust", "fear"])
    assert set(result["per_class"]) == {"angry", "fear"}  # no disgust image: no figure
    assert result["per_class"]["angry"] >= 0.9 and result["per_class"]["fear"] <= 0.1
    assert result["overall"] == pytest.approx((result["per_class"]["angry"] + result["per_class"]["fear"]) / 2)


def test_too_few_person_crops():
    with pytest.raises(ValueError, match=r"4 held-out person crop\(s\): at least 5"):
        train_person_scorer(faces(MIN_CROPS - 1, 0, True), faces(20, 1, False), 32, FAST)
    assert "only 19 held-out person crops" in crops_warning(19)
    assert crops_warning(20) is None
    train, control = split_control(5, 0.3, 0)
    assert len(train) == 3 and len(control) == 2 and not set(train) & set(control)


def test_the_report_lines_of_the_cyclegan_stage():
    from fertransfer.pipelines.report import cyclegan_translation_lines

    assert cyclegan_translation_lines({}) == []
    assert cyclegan_translation_lines({"translation": {"not_computed": "only 3 crops"}}) == [
        "person score not computed: only 3 crops"]
    summary = {"translation": {
        "images": 1000, "split": "test", "person_score": {"overall": 0.25, "per_class": {}},
        "controls": {"untranslated_sources": 0.01, "held_out_person_crops": 1.0, "held_out_person_crops_count": 4},
        "judge": {"judge_agreement": {"overall": 0.8, "per_class": {}}}, "warning": "only 12 held-out person crops"}}
    line, warning = cyclegan_translation_lines(summary)
    assert line == ("cyclegan on 1000 translated test images: person score 25.0% (controls: untranslated 1.0%, "
                    "4 held-out person crops 100.0%), judge agreement 80.0%")
    assert warning == "warning: only 12 held-out person crops"
    summary["translation"]["judge"]["person_accuracy"] = {"overall": 0.5, "images": 40, "per_class": {}}
    assert cyclegan_translation_lines(summary)[0].endswith(
        "judge agreement 80.0% (the judge reads the person's own 40 labelled faces at 50.0%)")
    summary["translation"]["controls"]["blends"] = {"1": 0.96, "2": 0.5, "4": 0.0}
    assert ("4 held-out person crops 100.0%, hybrids of those crops with the sources' fine lines σ1 96.0%, "
            "σ2 50.0%, σ4 0.0%)") in cyclegan_translation_lines(summary)[0]


def smooth_faces(count: int, seed: int, person: bool, size: int = 32) -> np.ndarray:
    """Smooth random faces; the person's carry a soft dark band (eyes) and a soft light one (chin),
    their coarse look, and a thin dark line of their own (fine detail)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(size)
    bands = 50 * (np.exp(-((rows - 0.85 * size) ** 2) / 18) - np.exp(-((rows - 0.35 * size) ** 2) / 18))
    out = []
    for _ in range(count):
        image = cv2.resize(rng.integers(60, 200, (6, 6), dtype=np.uint8), (size, size)).astype(float)
        if person:
            image += bands[:, None]
            image[int(0.6 * size)] -= 20
        out.append(np.clip(image, 0, 255).astype(np.uint8)[..., None])
    return np.stack(out)


def test_hybrids_are_a_control_and_with_blend_negatives_the_score_must_read_the_persons_detail():
    """A hybrid (the person's blur + a FER face's fine lines) of a face with itself is the face; a
    score that learned the person's coarse look takes hybrids for the person, and the control says
    so; trained with hybrids among its negatives it refuses them and still knows the person."""
    face = faces(1, 9, False, size=32)
    assert np.abs(blends(face, face, 32, 2.0).astype(int) - face).max() <= 1
    person, fer, unseen = smooth_faces(40, 1, True), smooth_faces(200, 2, False), smooth_faces(100, 3, False)
    config = PersonScoreConfig(steps=150, width=8, batch_size=16)
    _, plain = train_person_scorer(person, fer, 32, config, control_fer=unseen)
    strict_config = PersonScoreConfig(steps=150, width=8, batch_size=16, blend_negatives=0.5)
    strict, info = train_person_scorer(person, fer, 32, strict_config, control_fer=unseen)
    assert set(plain["blend_control"]) == {"1", "2", "4"}
    assert plain["blend_control"]["1"] >= 0.8 and plain["blend_control"]["2"] >= 0.6  # the cheat met the score
    assert max(info["blend_control"].values()) <= 0.1  # refused once hybrids were negatives
    assert info["person_control_score"] >= 0.9 and strict.share(unseen) <= 0.1  # and the person still known
    quick = PersonScoreConfig(steps=2, width=8, batch_size=16)
    assert train_person_scorer(person, fer, 32, quick)[1]["blend_control"] is None  # no unseen FER faces: none
    assert blends_note(info["blend_control"]).startswith("σ1 ") and blends_note(None) == "not measured"


def test_the_gallery_says_what_the_person_score_makes_of_hybrids():
    from fertransfer.augment.gallery import gallery_html

    person = {"held_out_person_crops": 1.0, "blends": {"1": 0.96, "2": 0.5, "4": 0.0}}
    judge = {"judge": "model", "person_score": person,
             "splits": {"test": {"images": 0, **{key: {"overall": None, "per_class": {}} for key in
                                                ("label_preservation", "judge_agreement", "source_accuracy")}}}}
    page = gallery_html([], None, "t", {}, judge=judge)
    assert "hybrids of those crops' blur with the sources' fine lines" in page
    assert "96.0% at 1 px, 50.0% at 2 px, 0.0% at 4 px" in page
    del person["blends"]
    assert "hybrids" not in gallery_html([], None, "t", {}, judge=judge)
