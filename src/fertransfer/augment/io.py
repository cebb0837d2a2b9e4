"""The augment stage's files: translated images with labels.csv, training-set folders, and
the guard against writing into a folder that holds another run's data.

Layout (inside the stage folder):

    translated/<split>/<class>/<index>_<source stem>.<ext>   + labels.csv
    sets/<set folder>/<class>/<pool>_<index>_<source stem>.<ext>

Set folders are flat class folders, readable with
`load_dataset(path, val_fraction=0, test_fraction=0)`. An image that appears in several sets is
written once and hard-linked (copied where links are not possible).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fertransfer.data.datasets import ImageSet
from fertransfer.data.images import write_jpeg, write_png
from fertransfer.errors import StageError
from fertransfer.progress import progress

from . import set_folder
from .builders import SetRecipe

LABELS_CSV = "labels.csv"
LABELS_COLUMNS = ("file", "label", "source_file", "split", "checkpoint")
GALLERY_MARKER = "gallery.json"


def write_image(path: Path, image: np.ndarray) -> None:
    if path.suffix == ".png":
        write_png(path, image)
    else:
        write_jpeg(path, image)


def file_stem(source: str) -> str:
    """A file-name-safe stem of a source file (CSV sources look like `fer2013.csv:123`)."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name if ":" in name else os.path.splitext(name)[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:60]


def write_translated(
    root: Path,
    split: str,
    translated: ImageSet,
    class_names: tuple[str, ...],
    checkpoint: str,
    ext: str,
    rows: list[dict],
) -> list[Path]:
    """translated/<split>/<class>/<index>_<stem>.<ext>; appends one labels.csv row per image
    (file relative to `root`) to `rows`. Returns the written paths, index for index."""
    for name in class_names:
        (root / "translated" / split / name).mkdir(parents=True, exist_ok=True)
    paths = []
    for i in progress(range(len(translated)), desc=f"writing translated/{split}", unit="img", disable=len(translated) < 500):
        label = class_names[translated.labels[i]]
        source = translated.files[i]
        path = root / "translated" / split / label / f"{i:06d}_{file_stem(source)}.{ext}"
        write_image(path, translated.images[i])
        paths.append(path)
        rows.append(
            {"file": path.relative_to(root).as_posix(), "label": label, "source_file": source, "split": split, "checkpoint": checkpoint}
        )
    return paths


def write_labels_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABELS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_labels_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(LABELS_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise StageError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            return list(reader)
    except FileNotFoundError:
        raise StageError(f"{path}: not found (is this an augment stage folder?)") from None


def _link_or_copy(existing: Path, target: Path) -> None:
    try:
        os.link(existing, target)
    except OSError:
        shutil.copyfile(existing, target)


class SetWriter:
    """Writes set recipes as class folders; each pool image is encoded at most once.

    `pools` give the images; `convert` (per pool, optional) turns a batch into the set's
    format; `written` may start with files that already exist (the translated images).
    """

    def __init__(
        self,
        root: Path,
        pools: dict[str, ImageSet],
        class_names: tuple[str, ...],
        ext: str,
        convert: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
        written: dict[tuple[str, int], Path] | None = None,
    ):
        self.root, self.pools, self.class_names, self.ext = root, pools, class_names, ext
        self.convert = convert or {}
        self.written = dict(written or {})

    def write(self, recipe: SetRecipe, native_pools: frozenset[str] = frozenset()) -> dict[str, int]:
        """Write one set; pools in `native_pools` skip `convert` (kept as they are).
        Returns images per class."""
        folder = self.root / "sets" / set_folder(recipe.name)
        for name in self.class_names:
            (folder / name).mkdir(parents=True, exist_ok=True)
        counts = dict.fromkeys(self.class_names, 0)
        total = len(recipe)
        bar = progress(total=total, desc=f"writing sets/{set_folder(recipe.name)}", unit="img", disable=total < 500)
        for pool_name, index in recipe.parts.items():
            pool = self.pools[pool_name]
            native = pool_name in native_pools
            key_pool = pool_name if native or pool_name not in self.convert else f"{pool_name}:converted"
            convert = None if native else self.convert.get(pool_name)
            for start in range(0, len(index), 256):
                chunk = index[start : start + 256]
                images = None
                for j, i in enumerate(chunk):
                    label = self.class_names[pool.labels[i]]
                    target = folder / label / f"{pool_name}_{i:06d}_{file_stem(pool.files[i])}.{self.ext}"
                    existing = self.written.get((key_pool, int(i)))
                    if existing is not None:
                        _link_or_copy(existing, target)
                    else:
                        if images is None:
                            images = pool.images[chunk] if convert is None else convert(pool.images[chunk])
                        write_image(target, images[j])
                        self.written[(key_pool, int(i))] = target
                    counts[label] += 1
                bar.update(len(chunk))
        bar.close()
        return counts


# --- output folders given on the command line ------------------------------------------
