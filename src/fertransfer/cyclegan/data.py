"""The two domains as arrays: training images at load size, held-out images at image size.

Domain A is a folder of one person's face crops (RGB); domain B is a labelled FER dataset
(splits and classes chosen in config; labels are not used). A small seeded part of each
domain is held out for the SWD metric and the fixed sample grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertransfer.data import FER, FERPLUS, ClassSet, DatasetError, load_dataset, load_image_folder
from fertransfer.data.datasets import ImageSet
from fertransfer.data.images import fit_square


@dataclass
class Domains:
    train_a: np.ndarray  # (N, load, load, a_channels) uint8
    train_b: np.ndarray
    held_a: np.ndarray  # (M, size, size, a_channels) uint8
    held_b: np.ndarray
    sources: dict  # where each domain came from, with counts


def holdout_split(count: int, wanted: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held) indices: `wanted` images held out, at most a fifth (at least one) of `count` >= 2."""
    held = min(wanted, max(1, count // 5))
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([fit_square(im, size) for im in images]).reshape(len(images), size, size, images.shape[3])


def domain_b_classes(labels: str = "fer") -> ClassSet:
    """Domain B's class set: FER's seven, or FER+'s eight with FER+ labels."""
    return FERPLUS if labels == "ferplus" else FER


def load_fer(path: str | Path, splits: list[str], classes: list[str], channels: int, size: int, seed: int,
             labels: str = "fer", ferplus: str | Path | None = None) -> ImageSet:
    """The chosen splits of a FER dataset, only the chosen classes (all when `classes` is empty);
    with `labels="ferplus"` the classes are FER+'s majority votes (images without one left out)."""
    class_set = domain_b_classes(labels)
    try:
        wanted = [class_set.index_or_raise(name, "[cyclegan].fer_classes") for name in classes]
    except ValueError as error:
        raise DatasetError(str(error)) from None
    dataset = load_dataset(path, classes=class_set, channels=channels, size=size, val_fraction=0.0, test_fraction=0.0,
                           seed=seed, labels=labels, ferplus=ferplus)
    unknown = [s for s in splits if s not in dataset.splits]
    if unknown:
        raise DatasetError(f"{path}: no split(s) {', '.join(unknown)} (it has {', '.join(dataset.splits)})")
    images = ImageSet.concat([dataset[s] for s in splits])
    if wanted:
        images = images.subset(np.flatnonzero(np.isin(images.labels, wanted)))
    return images


def load_domains(faces: str | Path, fer: str | Path, fer_splits: list[str], fer_classes: list[str],
                 a_channels: int, b_channels: int, image_size: int, load_size: int,
                 holdout: int, seed: int, labels: str = "fer", ferplus: str | None = None) -> Domains:
    """Both domains, resized to load_size (random crops to image_size happen per step)."""
    a_images, _ = load_image_folder(faces, channels=a_channels, size=load_size)
    b_set = load_fer(fer, fer_splits, fer_classes, b_channels, load_size, seed, labels, ferplus)
    for name, images, where in (("A", a_images, faces), ("B", b_set.images, fer)):
        if len(images) < 2:
            raise DatasetError(f"{where}: domain {name} has {len(images)} image(s); CycleGAN needs at least 2")
    a_train, a_held = holdout_split(len(a_images), holdout, seed)
    b_train, b_held = holdout_split(len(b_set.images), holdout, seed + 1)
    return Domains(
        train_a=a_images[a_train], train_b=b_set.images[b_train],
        held_a=resize_all(a_images[a_held], image_size), held_b=resize_all(b_set.images[b_held], image_size),
        sources={
            "A": {"path": str(faces), "images": len(a_images), "train": len(a_train), "held_out": len(a_held)},
            "B": {"path": str(fer), "splits": fer_splits, "classes": fer_classes or "all", "labels": labels,
                  "images": len(b_set.images), "train": len(b_train), "held_out": len(b_held)},
        },
    )
