"""A quick look at a labelled dataset: counts per split and class, and the majority baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import LabelledDataset

# Splits whose median sharpness differs by more than this factor are flagged: a model trained
# on one would meet a different kind of image in the other (a blurred copy of a split, e.g. a
# Gaussian of sigma 3 on 48x48 faces, measures about 0.05 against 0.5 for sharp ones).
SHARPNESS_RATIO_WARNING = 3.0


def sharpness_values(images: np.ndarray, limit: int = 2000) -> np.ndarray:
    """Per image, the mean |Laplacian| of the image standardised on its own.

    Standardising first makes it independent of brightness and contrast, so it measures blur.
    At most `limit` evenly spaced images are measured.
    """
    import cv2

    step = max(1, len(images) // limit)
    values = []
    for image in images[::step]:
        gray = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        gray = gray.astype(np.float32)
        gray = (gray - gray.mean()) / (gray.std() + 1e-6)
        values.append(float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean()))
    return np.array(values)


def sharpness(images: np.ndarray, limit: int = 2000) -> float:
    """The median of `sharpness_values`: one figure per split."""
    values = sharpness_values(images, limit)
    return float(np.median(values)) if len(values) else 0.0


def sharpness_warning(per_split: dict[str, float]) -> str | None:
    if len(per_split) < 2 or min(per_split.values()) <= 0:
        return None
    blurriest = min(per_split, key=per_split.get)
    sharpest = max(per_split, key=per_split.get)
    ratio = per_split[sharpest] / per_split[blurriest]
    if ratio < SHARPNESS_RATIO_WARNING:
        return None
    return (f"the {blurriest} split is {ratio:.0f}x blurrier than {sharpest} (median sharpness "
            f"{per_split[blurriest]:.3f} against {per_split[sharpest]:.3f}): a model trained on one "
            "will see different images in the other")


def summarise(dataset: LabelledDataset) -> dict:
    """Counts per split and class, and the accuracy of always guessing the training majority."""
    counts = dataset.counts()
    train = np.array(list(counts["train"].values()))
    majority = int(train.argmax())
    baseline = {}
    for split, split_counts in counts.items():
        total = sum(split_counts.values())
        baseline[split] = split_counts[dataset.class_names[majority]] / total if total else 0.0
    blur = {split: round(sharpness(s.images), 4) for split, s in dataset.splits.items()}
    return {
        "source": dataset.source,
        "layout": dataset.layout,
        "classes": list(dataset.class_names),
        "image_shape": list(dataset["train"].images.shape[1:]),
        "counts": counts,
        "totals": {split: sum(c.values()) for split, c in counts.items()},
        "majority_class": dataset.class_names[majority],
        "majority_baseline_accuracy": baseline,
        "skipped_files": len(dataset.skipped),
        "labels": dataset.labels,
        "dropped": dict(dataset.dropped),
        "sharpness": blur,
        "warnings": [w for w in [sharpness_warning(blur)] if w],
    }


def format_summary(summary: dict) -> str:
    classes = summary["classes"]
    splits = list(summary["counts"])
    width = max(8, *(len(c) for c in classes))
    lines = [
        f"{summary['source']}  ({summary['layout']}, images {'x'.join(map(str, summary['image_shape']))})",
        f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in splits),
    ]
    for c in classes:
        lines.append(f"{c:<{width}} " + " ".join(f"{summary['counts'][s][c]:>7}" for s in splits))
    lines.append(f"{'total':<{width}} " + " ".join(f"{summary['totals'][s]:>7}" for s in splits))
    acc = summary["majority_baseline_accuracy"]
    lines.append(
        f"majority-class baseline ('{summary['majority_class']}'): "
        + ", ".join(f"{s} {acc[s]:.1%}" for s in splits)
    )
    lines.append("median sharpness: " + ", ".join(f"{s} {v:.3f}" for s, v in summary["sharpness"].items()))
    if summary.get("labels", "fer") != "fer":
        dropped = summary.get("dropped", {})
        lines.append(f"labels: {summary['labels']}; {sum(dropped.values())} image(s) dropped"
                     + (" (" + ", ".join(f"{k}: {v}" for k, v in dropped.items()) + ")" if dropped else ""))
    lines += [f"warning: {w}" for w in summary["warnings"]]
    if summary["skipped_files"]:
        lines.append(f"skipped {summary['skipped_files']} unreadable file(s)")
    return "\n".join(lines)


def plot_class_distribution(summary: dict, path: str | Path) -> Path:
    """Grouped bar chart of images per class and split, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = summary["classes"]
    splits = list(summary["counts"])
    x = np.arange(len(classes))
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 4), dpi=100)
    for i, split in enumerate(splits):
        values = [summary["counts"][split][c] for c in classes]
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=f"{split} ({summary['totals'][split]})")
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.set_title(f"Class distribution: {Path(summary['source']).name}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
