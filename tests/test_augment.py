"""The augment stage's array core: transforms, the fit check, translation, builders, agreement."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from augment_helpers import SIZE, forward, labelled, to_person
from fertransfer.augment.builders import (
    balance_plan,
    balanced_set,
    classic_set,
    ratio_sample,
    real_classic_set,
    real_set,
    real_synthetic_set,
    synthetic_set,
)
from fertransfer.augment.core import GeneratorSpec, check_generator_fits, translate_images
from fertransfer.augment.transforms import classic_augment, random_crop_flip
from fertransfer.data.classes import FER
from fertransfer.data.datasets import ImageSet
from fertransfer.data.images import conform
from fertransfer.expression.judge import judge_accuracy_at_size, judge_translations
from fertransfer.pipelines.stage import StageError

NAMES = FER.names


def test_conform_converts_size_and_channels():
    gray = np.arange(48 * 40, dtype=np.int64).reshape(1, 48, 40, 1).astype(np.uint8)
    rgb = conform(gray, 32, 3)
    assert rgb.shape == (1, 32, 32, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert conform(rgb, 16, 1).shape == (1, 16, 16, 1)
    assert conform(rgb, 32, 3) is rgb  # already in shape: no copy


@pytest.mark.parametrize("augment", [random_crop_flip, classic_augment])
def test_augmentations_keep_shape_vary_and_repeat_with_the_seed(augment):
    images = np.random.default_rng(0).integers(0, 256, (20, 24, 24, 1), dtype=np.uint8)
    a = augment(images, np.random.default_rng(1))
    b = augment(images, np.random.default_rng(1))
    c = augment(images, np.random.default_rng(2))
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a != images).mean() > 0.5  # changed, not copied


def test_random_crop_flip_at_full_scale_only_flips():
    images = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    out = random_crop_flip(images, np.random.default_rng(0), min_scale=1.0)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    same = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_classic_augment_changes_brightness_of_a_flat_image():
    flat = np.full((40, 16, 16, 1), 128, np.uint8)
    out = classic_augment(flat, np.random.default_rng(0))
    means = out.reshape(40, -1).mean(axis=1)
    assert means.min() < 120 and means.max() > 136


def test_generator_fit_check_names_generator_and_data():
    gray = np.zeros((4, 48, 48, 1), np.uint8)
    check_generator_fits(GeneratorSpec(64, 1, 3, "g.pt (BtoA)"), gray, "fer")
    with pytest.raises(StageError, match=r"g.pt \(BtoA\) takes 3-channel 64x64 input, but fer holds gray 48x48"):
        check_generator_fits(GeneratorSpec(64, 3, 3, "g.pt (BtoA)"), gray, "fer")
    colour = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    with pytest.raises(StageError, match="takes 1-channel .* holds RGB"):
        check_generator_fits(GeneratorSpec(64, 1, 3, "g"), colour, "faces")
    with pytest.raises(StageError, match="a resize by 5.3x"):
        check_generator_fits(GeneratorSpec(256, 1, 3, "g"), gray, "fer")
    # Gray stored as three equal channels is gray.
    check_generator_fits(GeneratorSpec(64, 1, 3, "g"), np.repeat(gray, 3, axis=3), "fer")


def test_translate_images_batches_converts_and_checks_the_output():
    images = np.random.default_rng(0).integers(0, 256, (70, 24, 24, 1), dtype=np.uint8)
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return to_person(batch)

    out = translate_images(images, fn, forward().spec, batch_size=32, progress=False)
    assert calls == [32, 32, 6]
    assert out.shape == (70, SIZE, SIZE, 3)
    assert np.array_equal(out, to_person(conform(images, SIZE, 1)))

    with pytest.raises(StageError, match=r"returned uint8 \(32, 16, 16, 3\) .* expected uint8 \(32, 32, 32, 3\)"):
        translate_images(images, lambda b: np.zeros((len(b), 16, 16, 3), np.uint8), forward().spec, 32, progress=False)


def test_judge_figures_per_class():
    """Label preservation, judge agreement and the judge's accuracy on the sources are three
    different comparisons: this judge is wrong on one source and the translation keeps its error."""
    labels = np.array([0, 0, 0, 0, 3, 3])
    on_sources = np.array([0, 0, 1, 0, 3, 3])
    on_translations = np.array([0, 0, 1, 2, 3, 0])
    translated, sources = np.ones((6, 4, 4, 3), np.uint8), np.zeros((6, 4, 4, 3), np.uint8)
    judge = lambda images: on_translations if images.any() else on_sources  # noqa: E731
    result = judge_translations(judge, translated, sources, labels, NAMES)
    assert result["images"] == 6
    assert result["label_preservation"]["per_class"]["angry"] == 0.5  # 0, 0 right; 1, 2 wrong
    assert result["judge_agreement"]["per_class"]["angry"] == 0.75  # the 1 kept, the 2 changed
    assert result["source_accuracy"]["per_class"]["angry"] == 0.75
    assert result["judge_agreement"]["per_class"]["happy"] == 0.5 and result["source_accuracy"]["per_class"]["happy"] == 1.0
    assert result["label_preservation"]["per_class"]["sad"] is None
    assert result["judge_agreement"]["overall"] == round(4 / 6, 4)


def test_judge_accuracy_on_faces_brought_through_the_generators_size():
    """The person's own faces lose what the generator's size loses before the judge reads them:
    a fine checkerboard (angry) averaged to gray at 8 px is read as the flat faces (disgust) are."""
    checker = (np.indices((48, 48)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None]
    images = np.stack([checker, checker, np.full((48, 48, 1), 128, np.uint8), np.full((48, 48, 1), 128, np.uint8)])
    labels = np.array([0, 0, 1, 1])
    seen = []

    def judge(batch):
        seen.append(batch.shape[1:])
        return (batch.reshape(len(batch), -1).std(axis=1) < 20).astype(int)  # flat: disgust (1)

    full = judge_accuracy_at_size(judge, images, labels, NAMES, 48, 40, 1)
    assert full["overall"] == 1.0 and full["images"] == 4 and seen[-1] == (40, 40, 1)
    small = judge_accuracy_at_size(judge, images, labels, NAMES, 8, 40, 1)
    assert small["overall"] == 0.5 and small["per_class"]["angry"] == 0.0 and small["per_class"]["disgust"] == 1.0
    assert small["per_class"]["happy"] is None


# --- builders -----------------------------------------------------------------------------


def pools(counts):
    data = labelled(counts)
    real = data["train"]
    translated = ImageSet(to_person(conform(real.images, SIZE, 1)), real.labels, real.files)
    return real, translated


def test_balance_plan_reaches_the_largest_class_and_skips_empty_ones(caplog):
    counts = np.array([5, 0, 3, 10, 10, 1, 7])
    with caplog.at_level(logging.WARNING):
        extra, notes = balance_plan(counts, 0, NAMES)
    assert extra.tolist() == [5, 0, 7, 0, 0, 9, 3]
    assert notes == ["class 'disgust' has no images; skipped (it stays empty)"]
    assert "disgust" in caplog.text
    extra, _ = balance_plan(counts, 6, NAMES)
    assert extra.tolist() == [1, 0, 3, 0, 0, 5, 0]  # classes above 6 keep all


def test_builders_class_counts():
    counts = [6, 0, 3, 12, 4, 1, 2]
    real, translated = pools(counts)
    rng = np.random.default_rng(0)
    everything = {"real": real, "translated": translated}
    assert real_set(real).counts(everything, 7).tolist() == counts
    assert synthetic_set(translated).counts(everything, 7).tolist() == counts
    chosen = ratio_sample(translated.labels, 0.5, 7, rng)
    half = real_synthetic_set(real, chosen)
    assert half.counts(everything, 7).tolist() == [6 + 3, 0, 3 + 2, 12 + 6, 4 + 2, 1 + 1, 2 + 1]
    all_of_them = ratio_sample(translated.labels, 1.0, 7, rng)
    assert real_synthetic_set(real, all_of_them).counts(everything, 7).tolist() == [2 * c for c in counts]
    # The control: the same images as real+synthetic adds, altered by classic augmentation, not the GAN.
    control = real_classic_set(real, chosen, rng, prepare=lambda images: conform(images, SIZE, 3))
    assert control.recipe.counts({**everything, "classic_copies": control.extra}, 7).tolist() == half.counts(everything, 7).tolist()
    assert control.extra.files == [real.files[i] for i in chosen]
    assert control.extra.images.shape[1:] == (SIZE, SIZE, 3)
    assert not np.array_equal(control.extra.images, conform(real.images[chosen], SIZE, 3))

    extra, notes = balance_plan(np.array(counts), 0, NAMES)
    calls = []

    def more(images):
        calls.append(images.copy())
        return translate_images(images, to_person, forward().spec, 64, progress=False)

    balanced = balanced_set(real, translated, extra, more, rng, notes)
    with_extra = {**everything, "gan_extra": balanced.extra}
    assert balanced.recipe.counts(with_extra, 7).tolist() == [12, 0, 12, 12, 12, 12, 12]
    assert balanced.recipe.notes == notes
    # Plain translations first: a class of 3 takes its 3 translations and 6 new ones.
    assert len(balanced.recipe.parts["translated"]) == 6 + 3 + 4 + 1 + 2
    assert len(balanced.extra) == 12 * 5 - sum(counts[c] * 2 for c in (0, 2, 4, 5, 6))
    # The new translations come from crops/flips of the class's own images.
    assert len(calls) == 1 and calls[0].shape[1:] == real.images.shape[1:]
    for label, source in zip(balanced.extra.labels, balanced.extra.files):
        assert NAMES[label] in source
    assert balanced.extra.images.shape[1:] == (SIZE, SIZE, 3)

    classic = classic_set(real, extra, rng, notes, prepare=lambda images: conform(images, SIZE, 3))
    assert classic.recipe.counts({**everything, "classic_extra": classic.extra}, 7).tolist() == [12, 0, 12, 12, 12, 12, 12]
    assert classic.extra.images.shape[1:] == (SIZE, SIZE, 3)
    assert len(classic.extra) == int(extra.sum())


def test_balanced_sources_are_used_evenly():
    real, translated = pools([1, 0, 0, 9, 0, 0, 0])  # angry: 1 image -> 8 more, all from it
    extra, notes = balance_plan(np.array([1, 0, 0, 9, 0, 0, 0]), 0, NAMES)
    more = lambda images: translate_images(images, to_person, forward().spec, 64, progress=False)  # noqa: E731
    result = balanced_set(real, translated, extra, more, np.random.default_rng(0), notes)
    assert len(result.extra) == 7 and set(result.extra.files) == {real.files[0]}
    # Different crops and flips: not seven copies of one image.
    assert len({image.tobytes() for image in result.extra.images}) == 7
