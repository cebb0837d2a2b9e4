"""Saved classifiers: one folder per model, described by model.json, whatever the engine.

``model.json`` holds the engine, the class list (in label order), the input channels and
size, and the engine's own file; predict and evaluation only need ``load_classifier``.
The two-tier classifier (positive / negative / neutral first, then the fine class) is a
model of models: its folder holds a coarse model and one fine model per group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fertransfer.errors import StageError

MODEL_JSON = "model.json"

# The coarse groups of the two-tier classifier, as in the FER literature; a class not
# listed here (a custom class set) becomes a group of its own.
COARSE_GROUPS: dict[str, tuple[str, ...]] = {
    "positive": ("happy", "surprise"),
    "negative": ("angry", "disgust", "fear", "sad"),
    "neutral": ("neutral",),
}


class Classifier(Protocol):
    engine: str
    classes: list[str]
    channels: int
    size: int

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...

    def save(self, folder: Path) -> dict: ...


def predict_labels(classifier: Classifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities); the two-tier model decides in two steps, others by argmax."""
    probs = classifier.predict_proba(images)
    if isinstance(classifier, TwoTierClassifier):
        return classifier.decide(images), probs
    return probs.argmax(axis=1), probs


def coarse_groups(classes: list[str]) -> dict[str, list[str]]:
    """The coarse groups restricted to `classes`, each non-empty, in a stable order."""
    groups: dict[str, list[str]] = {}
    for name in classes:
        group = next((g for g, members in COARSE_GROUPS.items() if name in members), name)
        groups.setdefault(group, []).append(name)
    return groups


@dataclass
class TwoTierClassifier:
    """A coarse classifier over groups, then a fine classifier inside each group of 2+ classes."""

    coarse: Classifier
    fine: dict[str, Classifier | None]  # None for a one-class group
    groups: dict[str, list[str]]
    classes: list[str]

    engine = "two_tier"

    @property
    def channels(self) -> int:
        return self.coarse.channels

    @property
    def size(self) -> int:
        return self.coarse.size

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """P(class) = P(group) * P(class | group)."""
        group_probs = self.coarse.predict_proba(images)
        probs = np.zeros((len(images), len(self.classes)), np.float32)
        for g, (group, members) in enumerate(self.groups.items()):
            columns = [self.classes.index(m) for m in members]
            model = self.fine[group]
            inner = model.predict_proba(images) if model is not None else np.ones((len(images), 1), np.float32)
            probs[:, columns] = group_probs[:, [g]] * inner
        return probs

    def decide(self, images: np.ndarray) -> np.ndarray:
        """The group first, then the most likely class within it."""
        group_of = self.coarse.predict_proba(images).argmax(axis=1)
        labels = np.zeros(len(images), np.int64)
        for g, (group, members) in enumerate(self.groups.items()):
            rows = np.flatnonzero(group_of == g)
            if not len(rows):
                continue
            model = self.fine[group]
            inner = model.predict_proba(images[rows]).argmax(axis=1) if model is not None else np.zeros(len(rows), int)
            labels[rows] = [self.classes.index(members[i]) for i in inner]
        return labels

    def save(self, folder: Path) -> dict:
        save_classifier(self.coarse, folder / "coarse")
        for group, model in self.fine.items():
            if model is not None:
                save_classifier(model, folder / f"fine_{group}")
        return {"groups": self.groups}

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str = "cpu") -> TwoTierClassifier:
        groups = meta["groups"]
        fine = {g: load_classifier(folder / f"fine_{g}", device) if len(m) > 1 else None for g, m in groups.items()}
        return cls(load_classifier(folder / "coarse", device), fine, groups, list(meta["classes"]))


def save_classifier(classifier: Classifier, folder: Path) -> Path:
    """Write the model's files and model.json into `folder`; returns the model.json path."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"engine": classifier.engine, "classes": list(classifier.classes),
            "channels": int(classifier.channels), "size": int(classifier.size)}
    meta.update(classifier.save(folder))
    (folder / MODEL_JSON).write_text(json.dumps(meta, indent=2))
    return folder / MODEL_JSON


MODEL_CARD = "README.md"


def write_model_card(folder: Path, card: dict) -> Path:
    """README.md beside a saved model: what it was trained on and how well it did, for whoever
    finds the folder without the run around it.

    `card` keys: name, data, labels, classes, train_counts, seconds, machine, metrics
    ({split: {accuracy, macro_f1}}), date; the machine text comes from the caller (the edge).
    """
    lines = [f"# Model card: {card.get('name', folder.parent.name)}", "",
             f"- data: {card.get('data', 'unknown')}",
             f"- labels: {card.get('labels', 'fer')}"]
    if card.get("dropped"):
        lines.append("- images without a label (dropped): "
                     + ", ".join(f"{reason} {n}" for reason, n in card["dropped"].items()))
    lines += [f"- classes: {', '.join(card.get('classes', []))}",
              f"- engine: {card.get('engine', 'unknown')}",
              f"- trained: {card.get('date', 'unknown')}, {float(card.get('seconds', 0)):.1f} s on "
              f"{card.get('machine', 'unknown machine')}", "",
              "## Training images per class", "", "| class | images |", "| --- | ---: |"]
    lines += [f"| {c} | {n} |" for c, n in card.get("train_counts", {}).items()]
    lines += ["", "## Scores (selection used val only; test scored once at the end)", "",
              "| split | images | accuracy | macro-F1 |", "| --- | ---: | ---: | ---: |"]
    for split, m in card.get("metrics", {}).items():
        lines.append(f"| {split} | {m.get('images', '')} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    path = Path(folder) / MODEL_CARD
    path.write_text("\n".join(lines) + "\n")
    return path


def find_model(path: Path) -> Path:
    """The model folder for a model.json, a model folder, a training-set folder, a classify stage
    folder (its person_model/ when it has one) or a run folder (its classify/person_model/)."""
    path = Path(path)
    if path.is_file() and path.name == MODEL_JSON:
        return path.parent
    if not path.exists():
        raise StageError(f"{path}: no such model file or folder")
    for candidate in (path, path / "model", path / "person_model", path / "classify" / "person_model"):
        if (candidate / MODEL_JSON).is_file():
            return candidate
    trained = sorted(p.parent for p in path.glob(f"*/model/{MODEL_JSON}"))
    if len(trained) == 1:
        return trained[0]
    if trained:
        names = ", ".join(str(p.parent) for p in trained)
        raise StageError(f"{path}: holds several models; pass one of: {names}")
    raise StageError(f"{path}: no {MODEL_JSON} here (expected a model folder or a classify stage folder)")


def load_classifier(path: Path, device: str = "cpu") -> Classifier:
    folder = find_model(path)
    try:
        meta = json.loads((folder / MODEL_JSON).read_text())
        engine = meta["engine"]
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise StageError(f"{folder / MODEL_JSON}: unreadable model description ({error})") from None
    if engine not in ("cnn", "autokeras", "two_tier"):
        raise StageError(f"{folder / MODEL_JSON}: unknown engine '{engine}'")
    weights = folder / str(meta.get("file", ""))
    try:
        if engine == "cnn":
            from .cnn import CnnClassifier

            return CnnClassifier.load(folder, meta, device)
        if engine == "autokeras":
            from .keras_model import AutoKerasClassifier

            return AutoKerasClassifier.load(folder, meta)
        return TwoTierClassifier.load(folder, meta, device)
    except StageError:
        raise
    except Exception as error:  # noqa: BLE001 - torch and keras raise many types for damaged files
        # A truncated or altered weights file: one line naming it, not torch's "[Errno 22]" or a traceback.
        reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise StageError(f"{weights if meta.get('file') else folder}: unreadable model weights "
                         f"({type(error).__name__}{': ' + reason if reason else ''}); train the model again or restore the file"
                         ) from None
