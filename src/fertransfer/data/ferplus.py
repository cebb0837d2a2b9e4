"""FER+ labels: FER2013 relabelled by ten crowd votes per image (Barsoum et al. 2016).

``fer2013new.csv`` has one row per FER2013 row, in the original order, so an image is matched
by its FER2013 row: the ``_<row>`` suffix of a Kaggle folder file (``Training_00042.png``) or
its data row in the Kaggle CSV. Labels follow majority voting: the class with the most votes,
dropping images whose top vote is ``unknown`` or ``NF`` (not a face), is tied, or that FER+
itself dropped (empty ``Image name``). The votes can be used as soft targets.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import FERPLUS, ClassSet

LABEL_SOURCES: tuple[str, ...] = ("fer", "ferplus")
VOTE_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                 "contempt", "unknown", "NF")
EMOTION_COLUMNS = VOTE_COLUMNS[:8]
USAGES: dict[str, str] = {"training": "Training", "publictest": "PublicTest", "privatetest": "PrivateTest"}

# Why an image has no FER+ label; the keys of LabelledDataset.dropped.
DROPPED_BY_FERPLUS = "dropped by FER+ (no image name)"
TOP_UNKNOWN = "top vote unknown"
TOP_NOT_FACE = "top vote not a face (NF)"
TIED = "top vote tied"
NOT_IN_CLASSES = "majority class not in the class set"

_ROW_SUFFIX = re.compile(r"_(\d+)$")


class FerPlusError(ValueError):
    """A FER+ file or a dataset that cannot be matched with it; the message names which."""


@dataclass
class FerPlusVotes:
    """The votes of one fer2013new.csv: (rows, 10) counts in VOTE_COLUMNS order."""

    path: Path
    usage: list[str]
    named: np.ndarray  # bool per row: False where FER+ dropped the image
    votes: np.ndarray

    def __len__(self) -> int:
        return len(self.votes)


def read_votes(path: str | os.PathLike) -> FerPlusVotes:
    path = Path(path)
    if not path.is_file():
        raise FerPlusError(f"{path}: no such FER+ file (fer2013new.csv)")
    usage, named, votes = [], [], []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise FerPlusError(f"{path}: missing column(s) {', '.join(missing)}; expected FER+'s fer2013new.csv")
        for row_number, row in enumerate(reader, start=2):
            try:
                votes.append([int(row[c]) for c in VOTE_COLUMNS])
            except (TypeError, ValueError):
                raise FerPlusError(f"{path}:{row_number}: vote counts are not integers") from None
            usage.append((row["Usage"] or "").strip())
            named.append(bool((row["Image name"] or "").strip()))
    if not votes:
        raise FerPlusError(f"{path}: no rows")
    return FerPlusVotes(path, usage, np.array(named, bool), np.array(votes, np.int64).reshape(-1, len(VOTE_COLUMNS)))


def majority_labels(votes: FerPlusVotes, classes: ClassSet = FERPLUS) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """(label per row or -1, why each unlabelled row was dropped, soft targets (rows, len(classes))).

    Soft targets are the emotion votes over `classes`, normalised (zeros where none count).
    """
    column_class = [classes.index(FERPLUS.names[FERPLUS.index(c)]) for c in EMOTION_COLUMNS]
    counts = votes.votes
    top = counts.max(axis=1)
    tied = (counts == top[:, None]).sum(axis=1) > 1
    winner = counts.argmax(axis=1)
    labels = np.full(len(counts), -1, np.int64)
    reasons: list[str | None] = []
    for i in range(len(counts)):
        if not votes.named[i]:
            reason = DROPPED_BY_FERPLUS
        elif tied[i]:
            reason = TIED
        elif winner[i] == 8:
            reason = TOP_UNKNOWN
        elif winner[i] == 9:
            reason = TOP_NOT_FACE
        elif column_class[winner[i]] is None:
            reason = NOT_IN_CLASSES
        else:
            reason, labels[i] = None, column_class[winner[i]]
        reasons.append(reason)
    soft = np.zeros((len(counts), len(classes)), np.float32)
    for column, label in enumerate(column_class):
        if label is not None:
            soft[:, label] += counts[:, column]
    total = soft.sum(axis=1, keepdims=True)
    np.divide(soft, total, out=soft, where=total > 0)
    return labels, reasons, soft


def row_of_file(file: str, layout: str) -> int | None:
    """The FER2013 row of a loaded image: a folder file's ``_<row>`` suffix, a CSV entry's data row."""
    if layout == "csv":  # entries are named "<csv name>:<line number>", the header being line 1
        return int(file.rsplit(":", 1)[1]) - 2
    match = _ROW_SUFFIX.search(Path(file).stem)
    return int(match.group(1)) if match else None


def usage_of_file(file: str) -> str | None:
    """FER2013's Usage for a Kaggle folder file name (Training_/PublicTest_/PrivateTest_), else None."""
    prefix = Path(file).stem.split("_", 1)[0].lower()
    return USAGES.get(prefix)
