"""Labelled expression datasets and unlabelled face folders, loaded into arrays.

Three on-disk layouts are recognised, so that users can point the pipeline at whatever
they downloaded:

- the Kaggle CSV ``emotion,pixels,Usage`` (Usage: Training / PublicTest / PrivateTest);
- split folders ``root/<split>/<class>/*`` (the Kaggle FER2013 folders: its ``test/`` holds
  ``PublicTest_*`` files, used for validation, and ``PrivateTest_*`` files, the test set);
- flat class folders ``root/<class>/*``.

Missing splits are carved out of the training data by a seeded stratified split.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ferplus as fp
from .classes import FER, FERPLUS, ClassSet
from .images import fit_square, is_image_file, read_images, to_channels

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Folder names mapped to our split names.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}

CSV_USAGE: dict[str, str] = {"training": "train", "publictest": "val", "privatetest": "test"}
FER_PIXELS = 48 * 48


class DatasetError(ValueError):
    """Input data that cannot be used; the message names the file, row or folder."""


@dataclass
class ImageSet:
    """One split: images (N, H, W, C) uint8, integer labels (N,), source file per image, and with
    FER+ labels the vote distribution per image (N, classes) as soft targets."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    soft: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def subset(self, index: np.ndarray) -> ImageSet:
        soft = None if self.soft is None else self.soft[index]
        return ImageSet(self.images[index], self.labels[index], [self.files[i] for i in index], soft)

    @staticmethod
    def concat(parts: list[ImageSet]) -> ImageSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise DatasetError("nothing to concatenate")
        return ImageSet(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            [f for p in parts for f in p.files],
            np.concatenate([p.soft for p in parts]) if all(p.soft is not None for p in parts) else None,
        )


@dataclass
class LabelledDataset:
    """Named splits over one class set, with where they came from."""

    classes: ClassSet
    splits: dict[str, ImageSet]
    source: str
    layout: str
    skipped: list[str] = field(default_factory=list)
    labels: str = "fer"  # where the labels came from: "fer", or "ferplus (<votes file>)"
    dropped: dict[str, int] = field(default_factory=dict)  # images without a FER+ label, per reason

    def __getitem__(self, split: str) -> ImageSet:
        return self.splits[split]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: dict(zip(self.classes.names, s.counts(len(self.classes)).tolist()))
            for split, s in self.splits.items()
        }


# --- stratified splitting -------------------------------------------------------------


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, taken) with `fraction` of each class taken (at least one if it has 2+)."""
    rng = np.random.default_rng(seed)
    kept, taken = [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n = int(round(len(index) * fraction))
        if n == 0 and len(index) >= 2 and fraction > 0:
            n = 1
        taken.append(index[:n])
        kept.append(index[n:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(taken))


def _fill_missing_splits(
    splits: dict[str, ImageSet], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, ImageSet]:
    if "train" not in splits:
        if val_fraction > 0 or test_fraction > 0:
            raise DatasetError("the data has no training split")
        return {name: splits[name] for name in SPLITS if name in splits}
    if "test" not in splits and test_fraction > 0:
        kept, taken = stratified_split(splits["train"].labels, test_fraction, seed)
        splits["test"] = splits["train"].subset(taken)
        splits["train"] = splits["train"].subset(kept)
    if "val" not in splits and val_fraction > 0:
        kept, taken = stratified_split(splits["train"].labels, val_fraction, seed + 1)
        splits["val"] = splits["train"].subset(taken)
        splits["train"] = splits["train"].subset(kept)
    return {name: splits[name] for name in SPLITS if name in splits}


# --- the three layouts ----------------------------------------------------------------


def _list_images(folder: Path) -> list[str]:
    # os.walk on plain strings: pathlib objects cost more than decoding for 48x48 images.
    found = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += [os.path.join(directory, n) for n in names if not n.startswith(".") and is_image_file(n)]
    return sorted(found)


def _split_of_test_file(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith("publictest"):
        return "val"
    return "test"


def _detect_layout(root: Path) -> str:
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DatasetError(f"{root}: not a CSV file or a folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such file or folder")
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if not subdirs:
        raise DatasetError(f"{root}: no class or split folders inside")
    if all(d.name.lower() in SPLIT_ALIASES for d in subdirs):
        return "split-folders"
    return "class-folders"


def _list_class_folders(
    root: Path, classes: ClassSet, split_by_prefix: bool
) -> dict[str, list[tuple[str, int]]]:
    """(split -> [(file, label)]) for one folder of class folders."""
    entries: dict[str, list[tuple[str, int]]] = {}
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        label = classes.index(class_dir.name)
        if label is None:
            raise DatasetError(
                f"{class_dir}: unknown class folder '{class_dir.name}'; "
                f"known classes: {', '.join(classes.names)}"
            )
        for path in _list_images(class_dir):
            split = _split_of_test_file(os.path.basename(path)) if split_by_prefix else "train"
            entries.setdefault(split, []).append((path, label))
    return entries


def _decode(
    entries: list[tuple[str, int]], channels: int, size: int | None
) -> tuple[ImageSet, list[str]]:
    files = [f for f, _ in entries]
    images, ok, errors = read_images(files, channels=channels, size=size)
    labels = np.array([entries[i][1] for i in ok], dtype=np.int64)
    return ImageSet(images, labels, [files[i] for i in ok]), errors


def _load_folders(root: Path, layout: str, classes: ClassSet, channels: int, size: int | None):
    per_split: dict[str, list[tuple[str, int]]] = {}
    if layout == "class-folders":
        per_split = _list_class_folders(root, classes, split_by_prefix=False)
    else:
        split_dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
        has_val_dir = any(SPLIT_ALIASES[n] == "val" for n in split_dirs)
        for name, folder in sorted(split_dirs.items()):
            split = SPLIT_ALIASES[name]
            # A Kaggle-style test/ folder mixes PublicTest (validation) and PrivateTest files.
            by_prefix = split == "test" and not has_val_dir
            entries = _list_class_folders(folder, classes, split_by_prefix=by_prefix)
            for s, items in entries.items():
                per_split.setdefault(s if by_prefix else split, []).extend(items)
    splits, skipped = {}, []
    for split, entries in per_split.items():
        splits[split], errors = _decode(entries, channels, size)
        skipped += errors
    return splits, skipped


def _load_csv(path: Path, classes: ClassSet, channels: int, size: int | None):
    per_split: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    files: dict[str, list[str]] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected emotion,pixels,Usage")
        if "Usage" not in (reader.fieldnames or []):
            log.warning("%s: no Usage column: every row is taken as Training, and validation and test splits are "
                        "carved out of it by a seeded stratified split", path)
        for row_number, row in enumerate(reader, start=2):
            where = f"{path}:{row_number}"
            try:
                label = int(row["emotion"])
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: emotion '{row['emotion']}' is not an integer") from None
            if not 0 <= label < len(classes):
                raise DatasetError(f"{where}: emotion {label} is outside 0..{len(classes) - 1}")
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.int64)
            except (AttributeError, ValueError):
                raise DatasetError(f"{where}: pixels are not space-separated integers") from None
            if pixels.size != FER_PIXELS:
                raise DatasetError(f"{where}: {pixels.size} pixel values, expected {FER_PIXELS} (48x48)")
            if pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(f"{where}: pixel values outside 0..255")
            usage = (row.get("Usage") or "Training").strip().lower()
            split = CSV_USAGE.get(usage)
            if split is None:
                raise DatasetError(f"{where}: Usage '{row.get('Usage')}' is not Training, PublicTest or PrivateTest")
            per_split.setdefault(split, []).append(pixels.astype(np.uint8).reshape(48, 48))
            labels.setdefault(split, []).append(label)
            files.setdefault(split, []).append(f"{path.name}:{row_number}")
    splits = {}
    for split, images in per_split.items():
        arrays = [to_channels(image, channels) for image in images]
        if size is not None and size != 48:
            arrays = [fit_square(a, size) for a in arrays]
        splits[split] = ImageSet(np.stack(arrays), np.array(labels[split], dtype=np.int64), files[split])
    return splits, []


def _apply_ferplus(
    root: Path, layout: str, splits: dict[str, ImageSet], votes_path: str | os.PathLike, classes: ClassSet
) -> tuple[dict[str, ImageSet], dict[str, int]]:
    """The splits relabelled by FER+ majority vote (unlabelled images removed) and the drops per reason."""
    try:
        votes = fp.read_votes(votes_path)
    except fp.FerPlusError as error:
        raise DatasetError(str(error)) from None
    labels, reasons, soft = fp.majority_labels(votes, classes)
    rows: dict[str, np.ndarray] = {}
    for split, images in splits.items():
        found = []
        for file in images.files:
            row = fp.row_of_file(file, layout)
            if row is None:
                raise DatasetError(f"{file}: no FER2013 row in the name; FER+ labels need files named "
                                   "..._<row>.png (e.g. Training_00042.png, the 0-based row of fer2013.csv)")
            found.append(row)
        rows[split] = np.array(found, np.int64)
    highest = max((int(r.max()) for r in rows.values() if len(r)), default=-1)
    if layout == "csv" and highest + 1 != len(votes):
        raise DatasetError(f"{votes.path}: {len(votes)} FER+ rows, but {root} has {highest + 1} rows; "
                           "FER+ rows match FER2013's original rows one to one")
    if highest + 1 > len(votes):
        raise DatasetError(f"{votes.path}: {len(votes)} FER+ rows, but {root}'s highest row index + 1 is "
                           f"{highest + 1}; FER+ rows match FER2013's original rows one to one")
    dropped: dict[str, int] = {}
    relabelled = {}
    for split, images in splits.items():
        for file, row in zip(images.files, rows[split]):
            usage = fp.usage_of_file(file) if layout != "csv" else None
            if usage is not None and votes.usage[row] and votes.usage[row] != usage:
                raise DatasetError(f"{file}: a {usage} image, but {votes.path} row {row} is {votes.usage[row]}; "
                                   "is this the FER+ file of this FER2013?")
        for row in rows[split]:
            if reasons[row] is not None:
                dropped[reasons[row]] = dropped.get(reasons[row], 0) + 1
        keep = np.flatnonzero(labels[rows[split]] >= 0)
        kept = images.subset(keep)
        kept_rows = rows[split][keep]
        relabelled[split] = ImageSet(kept.images, labels[kept_rows], kept.files, soft[kept_rows])
    return relabelled, dict(sorted(dropped.items()))


def load_dataset(
    path: str | os.PathLike,
    classes: ClassSet | None = None,
    channels: int = 1,
    size: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    require_train: bool = True,
    labels: str = "fer",
    ferplus: str | os.PathLike | None = None,
) -> LabelledDataset:
    """Load a labelled expression dataset in any supported layout into train/val/test arrays.

    Unreadable images are skipped with one warning listing them; structural problems (bad CSV
    rows, unknown class folders, no images) raise DatasetError naming the place.
    `require_train=False` (with both fractions 0) accepts data that is only for evaluation,
    e.g. a lone `test/<class>/` folder.

    `labels="ferplus"` replaces the folder/CSV labels by FER+'s majority vote read from the votes
    file `ferplus` (fer2013new.csv; required, its place varies); `classes` then defaults to FERPLUS,
    images without a majority label are left out and counted in `dropped`, and each split gets
    the vote distribution as `soft`. Missing splits are carved out after relabelling.
    """
    if labels not in fp.LABEL_SOURCES:
        raise DatasetError(f"labels '{labels}': expected one of {', '.join(fp.LABEL_SOURCES)}")
    if labels == "ferplus" and not ferplus:
        raise DatasetError(f"{path}: labels = 'ferplus' needs the FER+ votes file (fer2013new.csv); give its path")
    if classes is None:
        classes = FERPLUS if labels == "ferplus" else FER
    root = Path(path)
    layout = _detect_layout(root)
    # With FER+ the folder/CSV labels are replaced, so read them as FER+ (FER's seven plus contempt).
    read_as = FERPLUS if labels == "ferplus" else classes
    if layout == "csv":
        splits, skipped = _load_csv(root, read_as, channels, size)
    else:
        splits, skipped = _load_folders(root, layout, read_as, channels, size)
    if skipped:
        log.warning("skipped %d unreadable image(s): %s", len(skipped), "; ".join(skipped))
    dropped: dict[str, int] = {}
    if labels == "ferplus":
        splits, dropped = _apply_ferplus(root, layout, splits, ferplus, classes)
        log.info("FER+ labels from %s: %d image(s) dropped (%s)", ferplus, sum(dropped.values()),
                 ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "none")
    splits = {k: v for k, v in splits.items() if len(v)}
    if not splits:
        raise DatasetError(f"{root}: no images found")
    if "train" not in splits and require_train:
        raise DatasetError(f"{root}: no training images found")
    splits = _fill_missing_splits(splits, val_fraction, test_fraction, seed)
    source = f"ferplus ({ferplus})" if labels == "ferplus" else "fer"
    return LabelledDataset(classes, splits, str(root), layout, skipped, source, dropped)


def class_folder_names(path: str | os.PathLike) -> list[str] | None:
    """The class folder names of a folder dataset, over all its splits, in first-seen order;
    None for a CSV, whose integer labels carry no names."""
    root = Path(path)
    layout = _detect_layout(root)
    if layout == "csv":
        return None
    parents = [root] if layout == "class-folders" else sorted(d for d in root.iterdir() if d.is_dir())
    names: dict[str, None] = {}
    for parent in parents:
        for d in sorted(parent.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                names[d.name] = None
    return list(names)


def load_labelled_set(
    path: str | os.PathLike,
    classes: ClassSet = FER,
    channels: int = 1,
    size: int | None = None,
    split: str | None = None,
) -> tuple[ImageSet, str]:
    """One labelled set for evaluation, never carved into splits: (images, which part).

    Flat class folders are one set, used whole. Split data gives `split`, else its test split
    when it has one, else all its splits together.
    """
    dataset = load_dataset(path, classes=classes, channels=channels, size=size, val_fraction=0,
                           test_fraction=0, require_train=False)
    if dataset.layout == "class-folders":
        if split is not None:
            raise DatasetError(f"{path}: flat class folders are one set with no '{split}' split; leave out the split")
        return dataset["train"], "whole set"
    if split is not None:
        if split not in dataset.splits:
            raise DatasetError(f"{path}: no '{split}' split (it has: {', '.join(dataset.splits)})")
        return dataset[split], f"{split} split"
    if "test" in dataset.splits:
        return dataset["test"], "test split"
    return ImageSet.concat(list(dataset.splits.values())), "all splits"


def load_image_folder(
    path: str | os.PathLike, channels: int = 3, size: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """All images below a folder (e.g. one person's face crops) as (N, H, W, C) and file names."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    files = _list_images(root)
    images, ok, errors = read_images(files, channels=channels, size=size)
    if errors:
        log.warning("skipped %d unreadable image(s): %s", len(errors), "; ".join(errors))
    if not ok:
        raise DatasetError(f"{root}: no readable images")
    return images, [files[i] for i in ok]
