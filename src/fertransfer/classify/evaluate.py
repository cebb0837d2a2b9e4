"""Scoring a classifier on held-out data, and the pictures and report a person reads.

Metrics come from scikit-learn; the majority-class baseline (always answering the most
common training class) is reported beside them so that an accuracy can be judged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fertransfer.data.classes import ClassSet


def score(labels: np.ndarray, predicted: np.ndarray, classes: list[str], majority_label: int) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, baseline."""
    index = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=index, zero_division=0
    )
    return {
        "images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=index, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=index).tolist(),
        "majority_class": classes[majority_label],
        "majority_baseline_accuracy": float(np.mean(labels == majority_label)) if len(labels) else 0.0,
    }


def classes_differ(found: list[str], classes: ClassSet, ignore: list[str] | tuple = ()) -> bool:
    """Whether a set's classes (folder names, or the classes its images have) are not exactly
    `classes` (aliases allowed; `ignore`d ones, e.g. classes left out of training, do not count).

    A set missing a class is refused too: its macro-F1 would average in a class it cannot score.
    """
    labels = [classes.index(name) for name in found]
    if None in labels:
        return True
    return {classes.names[i] for i in labels} - set(ignore) != set(classes.names) - set(ignore)


def class_mismatch(where: str, found: list[str], model_classes: list[str]) -> str:
    """The one-line error for a set whose classes are not the model's: both lists."""
    return f"{where}: its classes [{', '.join(found)}] are not the model's [{', '.join(model_classes)}]"


def present_classes(labels: np.ndarray, classes: ClassSet) -> list[str]:
    """The classes that have at least one image, in label order."""
    return [classes.names[i] for i in np.unique(labels)]


def headline(metrics: dict) -> str:
    """The figures a person reads first: images, accuracy, macro-F1, recall per class."""
    recall = ", ".join(f"{c} {v['recall']:.3f}" for c, v in metrics["per_class"].items())
    return (f"images {metrics['images']}, accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}\n"
            f"recall per class: {recall}")


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """Counts on the left, row-normalised (recall per true class) on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, data, label, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() or 1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        threshold = (data.max() or 1) / 2
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > threshold else "black")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: list[dict], path: Path, title: str, best_epoch: int | None = None) -> None:
    """Loss, accuracy and learning rate per epoch (train and validation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("loss", "train_loss", "val_loss"), ("accuracy", "train_acc", "val_acc"), ("learning rate", "lr", None))
    for ax, (name, train_key, val_key) in zip(axes, panels):
        if any(train_key in row for row in history):
            ax.plot(epochs, [row.get(train_key, np.nan) for row in history], "o-", label="train" if val_key else name)
        if val_key and any(val_key in row for row in history):
            ax.plot(epochs, [row.get(val_key, np.nan) for row in history], "o-", label="validation")
        if val_key and any(f"{val_key}_ema" in row for row in history):
            ax.plot(epochs, [row.get(f"{val_key}_ema", np.nan) for row in history], "o--",
                    label="validation (weight average)")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best (val)")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_markdown(name: str, metrics: dict) -> str:
    """A short human-readable report of one trained model (pictures relative to the stage folder)."""
    lines = [f"# classify: {name}", ""]
    info = metrics.get("training", {})
    if info:
        lines += [
            f"- engine: {metrics['engine']}, training images: {info.get('train_images')}, "
            f"best epoch (by validation accuracy): {info.get('best_epoch')}, stopped: {info.get('stopped')}, "
            f"training time: {info.get('seconds', 0):.0f} s",
        ]
    for split in ("val", "test", "person"):
        if split not in metrics:
            continue
        m = metrics[split]
        lines += [
            f"- {split}: accuracy **{m['accuracy']:.4f}**, macro-F1 {m['macro_f1']:.4f} on {m['images']} images "
            f"(majority baseline '{m['majority_class']}': {m['majority_baseline_accuracy']:.4f})",
        ]
    split = "test" if "test" in metrics else "val"
    if split in metrics:
        person = metrics.get("person", {}).get("per_class")
        extra = " person recall | person F1 | person support |" if person else ""
        lines += ["", f"Per class ({split}{' and person' if person else ''}):", "",
                  "| class | precision | recall | F1 | support |" + extra,
                  "|---|---|---|---|---|" + "---|" * (3 if person else 0)]
        for cls, row in metrics[split]["per_class"].items():
            line = f"| {cls} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
            if person:
                p = person[cls]
                line += f" {p['recall']:.3f} | {p['f1']:.3f} | {p['support']} |"
            lines.append(line)
    lines += [""] + [f"![{picture}]({picture})" for picture in metrics.get("pictures", [])] + [""]
    return "\n".join(lines)
