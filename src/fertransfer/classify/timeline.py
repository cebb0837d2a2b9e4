"""Pictures of a model's predictions over footage without labels: a timeline per video and the
distribution of predicted expressions.

One function draws the timeline for both places that need it: the classify stage (the person's
footage, from extract's faces) and `pipeline predict` on a video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_BINS = 400  # columns of the timeline; longer videos average their faces within a column


def timeline_bins(times: np.ndarray, probabilities: np.ndarray, duration: float | None = None,
                  max_bins: int = MAX_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges in seconds, mean probability per bin (classes, bins)); NaN where no face was seen.

    A bin is as short as the gap between frames that had a face, and at least duration / max_bins.
    """
    times = np.asarray(times, float)
    probabilities = np.asarray(probabilities, float)
    end = max(float(duration or 0), float(times.max()) if len(times) else 0.0)
    steps = np.diff(np.unique(times))
    width = max(float(np.median(steps)) if len(steps) else 1.0, end / max_bins, 1e-3)
    edges = np.arange(0.0, end + width, width)
    if len(edges) < 2:
        edges = np.array([0.0, width])
    index = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    sums = np.zeros((probabilities.shape[1], len(edges) - 1))
    counts = np.bincount(index, minlength=len(edges) - 1)
    for c in range(probabilities.shape[1]):
        sums[c] = np.bincount(index, weights=probabilities[:, c], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return edges, means


def plot_timeline(times: np.ndarray, probabilities: np.ndarray, classes: list[str], path: Path, title: str,
                  duration: float | None = None) -> Path:
    """Expression probabilities over time (one row per class, darker = more likely) with the
    predicted label (the most likely class) marked per column; grey where no face was seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, means = timeline_bins(times, probabilities, duration)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.35 * len(classes)))
    cmap = plt.get_cmap("Blues").with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(means), aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                      extent=(edges[0], edges[-1], len(classes) - 0.5, -0.5))
    seen = ~np.isnan(means[0])
    centres = (edges[:-1] + edges[1:]) / 2
    if seen.any():
        ax.plot(centres[seen], np.nanargmax(means[:, seen], axis=0), "o", color="#d62728", markersize=2.5,
                label="predicted label")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("time (s); grey: no face")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03, label="probability")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_distribution(counts: dict[str, int], path: Path, title: str) -> Path:
    """How often each expression was predicted: a bar per class with its share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values = list(counts), np.array(list(counts.values()), float)
    total = values.sum() or 1.0
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, values / total, color="C0")
    ax.bar_label(bars, labels=[f"{100 * v / total:.1f}%\n({int(v)})" for v in values], fontsize=8)
    ax.set_ylim(0, min(1.0, (values.max() / total if len(values) else 0) * 1.25 + 0.05))
    ax.set_ylabel("share of faces")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
