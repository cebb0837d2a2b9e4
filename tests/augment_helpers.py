"""Test scaffolding for the augment stage: deterministic stand-ins for the cyclegan generators.

The stand-ins are not models: `to_person` maps a gray image to a tinted RGB one at the
generator's size, `to_fer` maps it back to gray. They let builders, sets and the gallery be
checked exactly without a trained network.
"""

from __future__ import annotations

import numpy as np

from fertransfer.augment.build import Generator
from fertransfer.augment.core import GeneratorSpec
from fertransfer.data.classes import FER
from fertransfer.data.datasets import ImageSet, LabelledDataset

SIZE = 32


def to_person(images: np.ndarray) -> np.ndarray:
    """(N, SIZE, SIZE, 1) gray -> (N, SIZE, SIZE, 3): red = the image, green = its negative."""
    assert images.shape[1:] == (SIZE, SIZE, 1), images.shape
    gray = images[..., 0]
    return np.stack([gray, 255 - gray, gray // 2], axis=-1).astype(np.uint8)


def to_fer(images: np.ndarray) -> np.ndarray:
    assert images.shape[1:] == (SIZE, SIZE, 3), images.shape
    return images[..., :1].copy()


def forward() -> Generator:
    return Generator(to_person, GeneratorSpec(SIZE, 1, 3, "stand-in BtoA"))


def backward() -> Generator:
    return Generator(to_fer, GeneratorSpec(SIZE, 3, 1, "stand-in AtoB"))


def labelled(counts: list[int], size: int = 24, seed: int = 0, split_counts: dict | None = None) -> LabelledDataset:
    """An in-memory gray dataset with `counts[c]` train images of class c (pixel value encodes the index)."""
    rng = np.random.default_rng(seed)

    def image_set(per_class: list[int], prefix: str) -> ImageSet:
        labels = np.repeat(np.arange(len(per_class)), per_class).astype(np.int64)
        images = rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8)
        return ImageSet(images, labels, [f"/data/{prefix}/{FER.names[c]}/{prefix}_{i}.jpg" for i, c in enumerate(labels)])

    splits = {"train": image_set(counts, "train")}
    for name, per_class in (split_counts or {}).items():
        splits[name] = image_set(per_class, name)
    return LabelledDataset(FER, splits, source="in-memory", layout="test")
