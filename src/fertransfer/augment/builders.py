"""Training-set builders: which images of which pool go into each training set.

A set is a *recipe*: for each pool (``real``: the original FER images, ``translated``: their
translations, index for index, ``gan_extra`` / ``classic_extra``: images made for balancing,
``classic_copies``: classic augmentations of the sources real+synthetic draws)
the indices it takes. Recipes cost no memory and can be written with hard links, so five sets
over FER2013 do not hold five copies of it.

- ``real``: every real image.
- ``synthetic``: every translated image.
- ``real+synthetic``: every real image plus `ratio` of each class's translations.
- ``balanced``: every real image plus, for each class below the target, translations until it
  reaches the target: first the plain translations of its images, then translations of random
  crops and flips of them (``gan_extra``).
- ``classic``: the same counts per class as ``balanced``, the additions made by ordinary
  augmentation of real images (``classic_extra``) instead of the GAN.
- ``real+classic``: the control of ``real+synthetic``: every real image plus an ordinary
  augmentation of each real image ``real+synthetic`` adds a translation of, so that a gain
  of real+synthetic over it is the translation's and not that of a second, altered copy of FER.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fertransfer.data.datasets import ImageSet

from .transforms import classic_augment, random_crop_flip

log = logging.getLogger(__name__)


@dataclass
class SetRecipe:
    name: str
    parts: dict[str, np.ndarray]  # pool name -> indices into that pool
    notes: list[str] = field(default_factory=list)

    def counts(self, pools: dict[str, ImageSet], num_classes: int) -> np.ndarray:
        total = np.zeros(num_classes, np.int64)
        for pool, index in self.parts.items():
            total += np.bincount(pools[pool].labels[index], minlength=num_classes)
        return total

    def __len__(self) -> int:
        return int(sum(len(i) for i in self.parts.values()))


def class_indices(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def balance_plan(counts: np.ndarray, target: int, class_names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Images to add per class to reach `target` (0 = the largest class's count).

    A class with no images cannot be grown: it gets 0 and a note (also logged as a warning).
    Classes above the target keep all their images (nothing is removed).
    """
    target = int(target) or int(counts.max())
    extra = np.maximum(target - counts, 0)
    notes = []
    for c in np.flatnonzero(counts == 0):
        extra[c] = 0
        notes.append(f"class '{class_names[c]}' has no images; skipped (it stays empty)")
        log.warning("balanced: %s", notes[-1])
    return extra, notes


def _sources(index: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` source indices cycling through a shuffle of `index`, so sources are used evenly."""
    if count == 0 or len(index) == 0:
        return np.zeros(0, np.int64)
    return np.resize(rng.permutation(index), count)


def real_set(real: ImageSet) -> SetRecipe:
    return SetRecipe("real", {"real": np.arange(len(real))})


def synthetic_set(translated: ImageSet) -> SetRecipe:
    return SetRecipe("synthetic", {"translated": np.arange(len(translated))})


@dataclass
class BuiltSet:
    """A recipe and the images made for it (beyond any plain translations), with source files."""

    recipe: SetRecipe
    extra: ImageSet


def _classic_copies(real: ImageSet, source: np.ndarray, rng: np.random.Generator,
                    prepare: Callable[[np.ndarray], np.ndarray]) -> ImageSet:
    """Ordinary augmentations of the real images at `source`, each labelled and named after its source."""
    images = classic_augment(prepare(real.images[source]), rng) if len(source) else prepare(real.images[:0])
    return ImageSet(images, real.labels[source], [real.files[i] for i in source])


def ratio_sample(labels: np.ndarray, ratio: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """ratio * n (rounded half up) random indices of each class's n images, sorted per class."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"synthetic_ratio must be between 0 and 1, got {ratio}")
    chosen = []
    for index in class_indices(labels, num_classes):
        take = int(np.floor(ratio * len(index) + 0.5))
        chosen.append(np.sort(rng.permutation(index)[:take]))
    return np.concatenate(chosen)


def real_synthetic_set(real: ImageSet, chosen: np.ndarray) -> SetRecipe:
    """All real images plus the translations of the `chosen` ones (`ratio_sample`)."""
    return SetRecipe("real+synthetic", {"real": np.arange(len(real)), "translated": chosen})


def real_classic_set(
    real: ImageSet,
    chosen: np.ndarray,
    rng: np.random.Generator,
    prepare: Callable[[np.ndarray], np.ndarray] = lambda images: images,
) -> BuiltSet:
    """All real images plus an ordinary augmentation of each `chosen` one: real+synthetic with
    the GAN replaced by `classic_augment` (after `prepare`, the generator's size and channels)."""
    recipe = SetRecipe("real+classic", {"real": np.arange(len(real)), "classic_copies": np.arange(len(chosen))})
    return BuiltSet(recipe, _classic_copies(real, chosen, rng, prepare))


def balanced_set(
    real: ImageSet,
    translated: ImageSet,
    extra: np.ndarray,
    translate_fn: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    notes: list[str],
) -> BuiltSet:
    """Real images plus `extra[c]` translations per class: plain translations first, then
    translations of random crops/flips of the class's sources (`translate_fn` takes real images)."""
    num_classes = len(extra)
    plain, sources = [], []
    for c, index in enumerate(class_indices(translated.labels, num_classes)):
        take = min(int(extra[c]), len(index))
        plain.append(np.sort(rng.permutation(index)[:take]))
        sources.append(_sources(class_indices(real.labels, num_classes)[c], int(extra[c]) - take, rng))
    source = np.concatenate(sources)
    if len(source):
        images = translate_fn(random_crop_flip(real.images[source], rng))
    else:
        images = np.zeros((0, *translated.images.shape[1:]), np.uint8)
    gan_extra = ImageSet(images, real.labels[source], [real.files[i] for i in source])
    recipe = SetRecipe(
        "balanced",
        {"real": np.arange(len(real)), "translated": np.concatenate(plain), "gan_extra": np.arange(len(source))},
        list(notes),
    )
    return BuiltSet(recipe, gan_extra)


def classic_set(
    real: ImageSet,
    extra: np.ndarray,
    rng: np.random.Generator,
    notes: list[str],
    prepare: Callable[[np.ndarray], np.ndarray] = lambda images: images,
) -> BuiltSet:
    """Real images plus `extra[c]` classically augmented real images per class: the same class
    counts as `balanced_set`. `prepare` converts sources first (e.g. to the generator's size
    and channels, so that the additions look like balanced's in all but the GAN)."""
    num_classes = len(extra)
    per_class = class_indices(real.labels, num_classes)
    source = np.concatenate([_sources(per_class[c], int(extra[c]), rng) for c in range(num_classes)])
    recipe = SetRecipe("classic", {"real": np.arange(len(real)), "classic_extra": np.arange(len(source))}, list(notes))
    return BuiltSet(recipe, _classic_copies(real, source, rng, prepare))
