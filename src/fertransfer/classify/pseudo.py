"""Self-training on the person's footage: the initial model's most confident readings of the
person's own unlabelled faces, mixed into every fine-tuning batch.

The translated sets bring FER's labels to the person by changing FER faces; this brings the
person's faces to FER's labels by asking a model trained on FER. It is the plain domain-adaptation
baseline (pseudo-labels, kept per predicted class so that the class the model favours on the
person does not crowd out the rest: Zou et al. 2018, "class-balanced self-training"), and the
control any translated set has to beat. Footage has no labels: nothing here reads them. Where
extract's table does carry a label (a class folder), `agreement` reports how often the pseudo-label
matches it, for the results page only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertransfer.data.datasets import ImageSet
from fertransfer.expression.models import Classifier

from .footage import read_footage

PSEUDO_LABELS = "pseudo_labels.csv"  # in the classify stage's folder: every footage face, its reading, kept or not


def select_confident(probabilities: np.ndarray, keep: float) -> np.ndarray:
    """Indices of the faces kept: for each predicted class, the `keep` share of its faces the model
    is surest of (at least one per predicted class), in ascending order."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    kept = []
    for c in np.unique(predicted):
        members = np.flatnonzero(predicted == c)
        count = max(1, int(round(keep * len(members))))
        kept.append(members[np.argsort(-confidence[members], kind="stable")[:count]])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)


@dataclass
class PseudoLabels:
    images: ImageSet  # the kept faces with their pseudo-labels
    chosen: np.ndarray  # their indices among the faces read
    summary: dict  # counts, confidence, and the agreement with the table's labels where it has them


def pseudo_label(probabilities: np.ndarray, images: np.ndarray, files: list[str], classes: list[str],
                 keep: float, folder_labels: list[str] | None = None) -> PseudoLabels:
    """The kept faces and a summary; `folder_labels` (one per face, "" when none) is only compared."""
    chosen = select_confident(probabilities, keep)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    summary = {
        "footage_faces": len(files),
        "kept": int(len(chosen)),
        "keep_per_class": keep,
        "predicted": dict(zip(classes, np.bincount(predicted, minlength=len(classes)).tolist())),
        "kept_per_class": dict(zip(classes, np.bincount(predicted[chosen], minlength=len(classes)).tolist())),
        "mean_confidence": {"all": round(float(confidence.mean()), 4) if len(files) else None,
                            "kept": round(float(confidence[chosen].mean()), 4) if len(chosen) else None},
    }
    if folder_labels is not None:
        summary["agreement"] = agreement(predicted, chosen, folder_labels, classes)
    kept = ImageSet(images[chosen], predicted[chosen].astype(np.int64), [files[i] for i in chosen])
    return PseudoLabels(kept, chosen, summary)


def agreement(predicted: np.ndarray, chosen: np.ndarray, folder_labels: list[str], classes: list[str]) -> dict:
    """How often the pseudo-label is the face's folder class, over the faces whose folder names one
    of `classes` (all faces, and the kept ones): a check of the labeller, never used to train."""
    index = {name: i for i, name in enumerate(classes)}
    known = np.array([index.get(label, -1) for label in folder_labels])
    out = {}
    for part, subset in (("all", np.arange(len(predicted))), ("kept", chosen)):
        labelled = subset[known[subset] >= 0]
        out[part] = {"faces": int(len(labelled)),
                     "accuracy": round(float(np.mean(predicted[labelled] == known[labelled])), 4) if len(labelled) else None}
    return out


def label_footage(classifier: Classifier, table: Path, faces: Path, keep: float) -> tuple[PseudoLabels, list[dict]]:
    """Read extract's footage faces (`table`: faces.csv, crops in `faces`) at the classifier's input,
    pseudo-label them, and return the kept set with one row per face for `write_rows`."""
    from fertransfer.errors import StageError

    rows, probabilities, images = read_footage(classifier, table, faces, keep_images=True)
    if not rows:
        raise StageError(f"{table}: no footage faces to pseudo-label")
    classes = list(classifier.classes)
    result = pseudo_label(probabilities, images, [r["file"] for r in rows], classes, keep,
                          [r.get("label", "") or "" for r in rows])
    kept = np.zeros(len(rows), bool)
    kept[result.chosen] = True
    for row, p, chosen in zip(rows, probabilities, kept):
        row.update(pseudo_label=classes[int(p.argmax())], confidence=round(float(p.max()), 4), kept=bool(chosen))
    return result, rows


def write_rows(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "video", "frame", "pseudo_label", "confidence", "kept"])
        for row in rows:
            writer.writerow([row["file"], row["video"], row["frame"], row["pseudo_label"], row["confidence"],
                             int(row["kept"])])
