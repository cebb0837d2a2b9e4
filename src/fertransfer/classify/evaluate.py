"""Scoring a classifier on held-out data, and the pictures and report a person reads.

Metrics come from scikit-learn; the majority-class baseline (always answering the most
common training class) is reported beside them so that an accuracy can be judged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def score(labels: np.ndarray, predicted: np.ndarray, classes: list[str], majority_label: int) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, baseline.

    Scored over the classes the set has: a test set without neutral (CK+) gets no neutral row, its
    macro-F1 averages the classes present, and the model's answers of an absent class stay errors
    (columns of the confusion matrix, which spans every model class; `predicted_absent` counts them).
    """
    everything = list(range(len(classes)))
    present = [int(i) for i in np.unique(labels)] if len(labels) else everything
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=present, zero_division=0
    )
    absent = [i for i in everything if i not in present]
    return {
        "images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)),
        "per_class": {
            classes[c]: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                         "support": int(support[i])}
            for i, c in enumerate(present)
        },
        "absent_classes": [classes[i] for i in absent],
        "predicted_absent": int(np.isin(predicted, absent).sum()),
        "confusion_rows": [classes[i] for i in present],
        "confusion_matrix": confusion_matrix(labels, predicted, labels=everything)[present].tolist(),
        "majority_class": classes[majority_label],
        "majority_baseline_accuracy": float(np.mean(labels == majority_label)) if len(labels) else 0.0,
    }


def headline(metrics: dict) -> str:
    """The figures a person reads first: images, accuracy, macro-F1, recall per class."""
    recall = ", ".join(f"{c} {v['recall']:.3f}" for c, v in metrics["per_class"].items())
    text = (f"images {metrics['images']}, accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}\n"
            f"recall per class: {recall}")
    if metrics.get("absent_classes"):
        text += (f"\nnot in this set: {', '.join(metrics['absent_classes'])} (macro-F1 over the "
                 f"{len(metrics['per_class'])} classes present; {metrics['predicted_absent']} answer(s) of an "
                 f"absent class, counted as errors)")
    return text


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str,
                   rows: list[str] | None = None) -> None:
    """Counts on the left, row-normalised (recall per true class) on the right; `rows`: the true
    classes of the matrix's rows when the set lacks some of the model's (columns: every class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    rows = classes if rows is None else rows
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5 * max(0.5, len(rows) / max(1, len(classes)))))
    for ax, data, label, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() or 1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        threshold = (data.max() or 1) / 2
        for i in range(len(rows)):
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
                p = person.get(cls)  # a class the person's set lacks has no row there
                line += f" {p['recall']:.3f} | {p['f1']:.3f} | {p['support']} |" if p else " - | - | 0 |"
            lines.append(line)
    lines += [""] + [f"![{picture}]({picture})" for picture in metrics.get("pictures", [])] + [""]
    return "\n".join(lines)
