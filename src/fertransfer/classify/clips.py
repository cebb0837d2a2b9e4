"""The person's test set as clips: per-clip figures and clip-bootstrap intervals.

A frame is not an independent test case: the person's labelled faces are the held-out ends of
a few clips (MEAD: one clip per expression), and a clip read wrongly moves a per-frame figure
by its whole share. So every person figure here is also given per clip (the clip's majority
label, and the label of its mean probability), and its 95% interval comes from a bootstrap
that resamples clips, not frames. A difference between two models (a set against `real`) is
bootstrapped on the same resampled clips, keeping the pairing; over seeds, each draw scores
every seed's model on the same clips and averages them.

Clip identity comes from the file names extract writes (``person_test/<class>/<video
stem>_<frame>.jpg``): the class folder and the stem without its frame number. Files without a
frame number are each their own clip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_SUFFIX = re.compile(r"^(?P<clip>.+)_(?P<frame>\d+)$")
LEVELS = ("frames", "clips_majority", "clips_mean_probability")


@dataclass
class Clips:
    """Which clip each frame belongs to."""

    index: np.ndarray  # (frames,) clip number of each frame
    names: list[str]  # clip number -> "<class folder>/<clip stem>"
    labels: np.ndarray  # (clips,) each clip's true label (the majority of its frames')
    warnings: list[str]

    @property
    def count(self) -> int:
        return len(self.names)


def clip_name(file: str) -> str | None:
    """'<class folder>/<video stem>' for a file named '<video stem>_<frame>.<ext>'; None without a frame number."""
    path = Path(file)
    match = FRAME_SUFFIX.match(path.stem)
    return f"{path.parent.name}/{match['clip']}" if match else None


def find_clips(files: list[str], labels: np.ndarray, num_classes: int) -> Clips:
    """The clips of a labelled set from its file names; warnings for what makes the figures weak."""
    names = [clip_name(f) for f in files]
    warnings = []
    unnamed = sum(name is None for name in names)
    if unnamed:
        warnings.append(f"{unnamed} of {len(files)} person test file(s) carry no frame number (<clip>_<frame>.jpg, "
                        "as extract writes them), e.g. {}: each is counted as its own clip, so the per-clip figures "
                        "and intervals treat its frames as independent".format(Path(files[names.index(None)]).name))
        names = [name if name is not None else f"file:{f}" for name, f in zip(names, files)]
    order = list(dict.fromkeys(names))
    number = {name: i for i, name in enumerate(order)}
    index = np.array([number[name] for name in names], np.int64)
    clip_labels = np.array([np.bincount(labels[index == i], minlength=num_classes).argmax() for i in range(len(order))],
                           np.int64)
    mixed = [order[i] for i in range(len(order)) if len(np.unique(labels[index == i])) > 1]
    if mixed:
        warnings.append(f"{len(mixed)} clip(s) hold frames of several classes, e.g. {mixed[0]}: each clip is scored "
                        "against its majority label")
    per_class = np.bincount(clip_labels, minlength=num_classes)
    present = per_class[per_class > 0]
    if len(present) and present.max() <= 1:
        warnings.append(f"the person test set has one clip per class ({len(order)} clips): an interval that "
                        "resamples clips is wide, and the per-clip accuracy moves in steps of "
                        f"{100 / len(order):.0f} points")
    return Clips(index, order, clip_labels, warnings)


def clip_predictions(probs: np.ndarray, clips: Clips, predicted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each clip's label by majority of its frames' labels (`predicted`, else the most probable;
    ties: the higher mean probability) and by its mean probability."""
    num_classes = probs.shape[1]
    votes = np.zeros((clips.count, num_classes))
    np.add.at(votes, (clips.index, probs.argmax(axis=1) if predicted is None else predicted), 1)
    sums = np.zeros((clips.count, num_classes))
    np.add.at(sums, clips.index, probs)
    mean_probability = sums / np.bincount(clips.index, minlength=clips.count)[:, None]
    tie_break = votes + 0.5 * mean_probability  # a mean probability is below 1: only ties change
    return {"clips_majority": tie_break.argmax(axis=1), "clips_mean_probability": mean_probability.argmax(axis=1)}


def clip_counts(num_clips: int, draws: int, seed: int) -> np.ndarray:
    """(draws, clips): how often each clip is drawn in each bootstrap resample of the clips."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, num_clips, size=(draws, num_clips))
    offsets = picks + num_clips * np.arange(draws)[:, None]
    return np.bincount(offsets.ravel(), minlength=draws * num_clips).reshape(draws, num_clips).astype(np.float64)


def level_correct(labels: np.ndarray, probs: np.ndarray, clips: Clips,
                  predicted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Right (1) or wrong (0) per frame and per clip (both clip rules) for one model; `predicted`:
    its frame labels when they are not the most probable class (the two-tier model decides in two steps)."""
    predicted = probs.argmax(axis=1) if predicted is None else predicted
    by_clip = clip_predictions(probs, clips, predicted)
    return {"frames": (predicted == labels).astype(np.float64),
            **{level: (predicted == clips.labels).astype(np.float64) for level, predicted in by_clip.items()}}


def accuracy_draws(correct: np.ndarray, level: str, clips: Clips, counts: np.ndarray) -> np.ndarray:
    """(draws, seeds) accuracy of each seed's model on each resample; `correct` is (seeds, frames)
    for the frame level and (seeds, clips) for a clip level."""
    if level == "frames":
        per_clip = np.zeros((len(correct), clips.count))
        for s, row in enumerate(correct):
            per_clip[s] = np.bincount(clips.index, weights=row, minlength=clips.count)
        frames = np.bincount(clips.index, minlength=clips.count).astype(np.float64)
        return counts @ per_clip.T / (counts @ frames)[:, None]
    return counts @ correct.T / clips.count


def interval(draws: np.ndarray) -> list[float]:
    """The 95% percentile interval of bootstrap draws."""
    low, high = np.percentile(draws, [2.5, 97.5])
    return [float(low), float(high)]


def mean_std(values) -> dict:
    """Mean and sample standard deviation (None from one value) over seeds."""
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "values": [float(v) for v in array]}


def person_statistics(labels: np.ndarray, probs: dict[str, list[np.ndarray]], clips: Clips,
                      reference: str | None = "real", draws: int = 2000, seed: int = 0,
                      predicted: dict[str, list[np.ndarray]] | None = None) -> dict:
    """Per training set and level: accuracy per seed, mean and std over seeds, the 95% clip-bootstrap
    interval of the seed mean and, beside `reference`, the paired difference (per seed, mean, std,
    interval on the same resampled clips). `probs[set]` holds one (frames, classes) array per seed,
    in the same seed order for every set; `predicted[set]`, the frame labels where they are not
    the most probable class."""
    counts = clip_counts(clips.count, draws, seed) if draws > 0 else None
    predicted = predicted or {}
    correct = {name: [level_correct(labels, p, clips, (predicted.get(name) or [None] * len(seeds))[i])
                      for i, p in enumerate(seeds)] for name, seeds in probs.items()}
    out: dict = {}
    for name, per_seed in correct.items():
        out[name] = {}
        for level in LEVELS:
            matrix = np.stack([c[level] for c in per_seed])
            figures = mean_std(matrix.mean(axis=1))
            if counts is not None:
                figures["interval"] = interval(accuracy_draws(matrix, level, clips, counts).mean(axis=1))
            if reference in correct and name != reference:
                base = np.stack([c[level] for c in correct[reference]])
                if len(base) != len(matrix):
                    raise ValueError(f"'{name}' has {len(matrix)} seed(s), '{reference}' {len(base)}: no pairing")
                difference = mean_std(matrix.mean(axis=1) - base.mean(axis=1))
                if counts is not None:
                    paired = accuracy_draws(matrix, level, clips, counts) - accuracy_draws(base, level, clips, counts)
                    difference["interval"] = interval(paired.mean(axis=1))
                figures["difference"] = difference
            out[name][level] = figures
    return out
