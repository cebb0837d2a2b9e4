"""Labelled test sets whose classes need not be exactly the model's.

Real labelled sets rarely hold all of a model's classes: CK+48 has no neutral and adds contempt,
one CREMA-D actor has no surprise. Such a set is scored on the classes it has
(`evaluate.score` scores over the classes present); a class the model does not know is left out,
with a warning naming it and its image count. `strict` keeps the older rule: exactly the model's
classes, or one error naming both lists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from fertransfer.data import ClassSet, DatasetError, ImageSet, class_folder_names, load_labelled_set
from fertransfer.data.classes import normalise_name

log = logging.getLogger(__name__)


@dataclass
class TestSet:
    """One labelled set ready to score: labels in the model's class order."""

    data: ImageSet
    part: str  # which part of the dataset: "whole set", "test split", ...
    absent: list[str] = field(default_factory=list)  # model classes with no image here
    left_out: dict[str, int] = field(default_factory=dict)  # classes the model does not know -> images dropped

    def describe(self) -> str:
        """A short note for tables and logs: which classes are missing or were dropped."""
        notes = []
        if self.absent:
            notes.append(f"no {', '.join(self.absent)}")
        if self.left_out:
            notes.append("left out: " + ", ".join(f"{c} ({n})" for c, n in self.left_out.items()))
        return "; ".join(notes)


def class_mismatch(where: str, found: list[str], model_classes: list[str] | tuple[str, ...]) -> str:
    """The one-line error for a set whose classes are not the model's: both lists."""
    return f"{where}: its classes [{', '.join(found)}] are not the model's [{', '.join(model_classes)}]"


def load_test_set(
    path: str | os.PathLike,
    classes: ClassSet,
    channels: int,
    size: int,
    split: str | None = None,
    csv_classes: ClassSet | None = None,
    strict: bool = False,
    ignore: list[str] | tuple[str, ...] = (),
    where: str | None = None,
) -> TestSet:
    """A labelled set scored against a model with `classes`.

    Folder data: a class folder the model does not know is read, counted and dropped. A CSV's
    integer labels are in the order of `csv_classes` (default: the model's). `ignore`d model
    classes (left out of training) are neither absent nor refused. `strict`: a class the model does
    not know, or a model class with no image, raises DatasetError naming both lists.
    """
    where = where or str(path)
    found = class_folder_names(path)
    if found is None:
        source = csv_classes or classes
        names = list(source.names)
        unknown = [n for n in names if classes.index(n) is None]
    else:
        names = found
        unknown = list(dict.fromkeys(normalise_name(n) for n in found if classes.index(n) is None))
        source = ClassSet([*classes.names, *unknown], classes.aliases)
    if strict and unknown:
        raise DatasetError(class_mismatch(where, names, [c for c in classes.names if c not in ignore]))
    data, part = load_labelled_set(path, classes=source, channels=channels, size=size, split=split)
    to_model = np.array([-1 if classes.index(n) is None else classes.index(n) for n in source.names], np.int64)
    counts = np.bincount(data.labels, minlength=len(source))
    left_out = {name: int(counts[i]) for i, name in enumerate(source.names) if to_model[i] < 0}
    keep = np.flatnonzero(to_model[data.labels] >= 0)
    kept = data.subset(keep)
    data = ImageSet(kept.images, to_model[kept.labels], kept.files, kept.soft)
    present = {classes.names[i] for i in np.unique(data.labels)}
    absent = [c for c in classes.names if c not in present and c not in ignore]
    if strict and absent:
        raise DatasetError(class_mismatch(f"{where}, {part}", [c for c in classes.names if c in present],
                                          [c for c in classes.names if c not in ignore]))
    if left_out:
        log.warning("%s: class(es) the model does not know, left out: %s", where,
                    ", ".join(f"{c} ({n} image{'s' if n != 1 else ''})" for c, n in left_out.items()))
    if len(data) == 0:
        raise DatasetError(f"{where}: no images of the model's classes [{', '.join(classes.names)}]")
    return TestSet(data, part, absent, left_out)
