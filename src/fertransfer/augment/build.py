"""Everything the augment stage writes, given its generators as functions.

`build_outputs` is the stage's work minus loading the generator: the stage passes the cyclegan
Translator's `translate`, tests a deterministic stand-in. `rebuild_gallery` is the same gallery
made again from a finished stage folder (`pipeline gallery RUN_DIR`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertransfer.data.datasets import DatasetError, ImageSet, LabelledDataset, load_dataset
from fertransfer.data.images import UnreadableImage, conform, is_image_file, read_image, read_images, write_png
from fertransfer.errors import StageError

from . import SET_NAMES, set_folder
from .builders import (
    balance_plan,
    balanced_set,
    classic_set,
    ratio_sample,
    real_classic_set,
    real_set,
    real_synthetic_set,
    synthetic_set,
)
from .core import (
    GeneratorSpec,
    TranslateFn,
    check_generator_fits,
    is_gray,
    translate_images,
)
from .gallery import GalleryClass, gallery_html, gallery_mosaic, judge_split, pick_examples
from .io import GALLERY_MARKER, LABELS_CSV, SetWriter, read_labels_csv, write_labels_csv, write_translated

GALLERY_HTML = "gallery.html"
GALLERY_PNG = "gallery.png"


@dataclass
class Generator:
    """A translation function and what it takes and gives."""

    fn: TranslateFn
    spec: GeneratorSpec
    precision: str = "fp32"  # what the generator computes in (for the summary)


@dataclass
class BuildSettings:
    splits: list[str]
    sets: list[str]
    synthetic_ratio: float = 1.0
    balanced_target: int = 0
    gallery_examples: int = 8
    batch_size: int = 64
    image_format: str = "png"
    seed: int = 0


def settings_problems(settings: BuildSettings) -> list[str]:
    """One line for each kind of bad value, `key: why` (checked before any stage runs)."""
    problems = []
    unknown = [s for s in settings.sets if s not in SET_NAMES]
    if unknown:
        problems.append(f"sets: unknown set(s) {', '.join(unknown)}; known: {', '.join(SET_NAMES)}")
    bad_splits = [s for s in settings.splits if s not in ("train", "val", "test")]
    if bad_splits or not settings.splits:
        problems.append(f"splits: {settings.splits!r}; give one or more of train, val, test")
    elif settings.sets and "train" not in settings.splits:
        problems.append("splits: the training sets are built from 'train'; add it (or set sets = [])")
    if not 0 <= settings.synthetic_ratio <= 1:
        problems.append(f"synthetic_ratio: {settings.synthetic_ratio} is outside 0..1")
    for name in ("balanced_target", "gallery_examples"):
        if getattr(settings, name) < 0:
            problems.append(f"{name}: {getattr(settings, name)} is negative")
    if settings.batch_size < 1:
        problems.append(f"batch_size: {settings.batch_size} must be at least 1")
    if settings.image_format not in ("png", "jpg"):
        problems.append(f"image_format: {settings.image_format!r} is not png or jpg")
    return problems


def check_settings(settings: BuildSettings) -> None:
    """The first problem of settings_problems as an error (for callers of build_outputs)."""
    problems = settings_problems(settings)
    if problems:
        raise StageError(f"[augment].{problems[0]}")


def load_fer(path: str | os.PathLike, seed: int, labels: str = "fer",
             ferplus: str | os.PathLike | None = None) -> LabelledDataset:
    """The labelled dataset in its own channels: gray (1) when every image is gray, else RGB.

    Splits the data lacks are carved out of train with load_dataset's defaults and `seed`, the
    same split every stage gets (with the same `labels`), so validation/test images never enter
    a training set. `labels="ferplus"`: FER+'s majority votes from `ferplus`, eight classes.
    """
    dataset = load_dataset(path, channels=3, seed=seed, labels=labels, ferplus=ferplus)
    if all(is_gray(s.images) for s in dataset.splits.values()):
        for s in dataset.splits.values():
            s.images = np.ascontiguousarray(s.images[..., :1])
    return dataset


def load_faces(folder: Path, count: int, size: int, channels: int, seed: int) -> np.ndarray:
    """`count` random images of a face folder (searched recursively) at the generator's format."""
    files = sorted(
        os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if is_image_file(n) and not n.startswith(".")
    )
    chosen = [files[i] for i in np.sort(np.random.default_rng(seed).permutation(len(files))[:count])]
    images, _, _ = read_images(chosen, channels=channels, size=size)
    return images


def class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    return dict(zip(class_names, np.bincount(labels, minlength=len(class_names)).tolist()))


def gallery_classes(
    real: ImageSet,
    translated: np.ndarray,
    backward: Generator | None,
    class_names: tuple[str, ...],
    examples: int,
    seed: int,
    judge: dict | None = None,
    batch_size: int = 64,
) -> list[GalleryClass]:
    """Per class: `examples` originals, their translations and, with `backward`, cycled back."""
    picks = pick_examples(real.labels, len(class_names), examples, seed)
    chosen = np.concatenate(picks)
    cycled = None
    if backward is not None and len(chosen):
        cycled = translate_images(translated[chosen], backward.fn, backward.spec, batch_size, progress=False)
    classes, start = [], 0
    headline = judge_split(judge)
    per_class = headline[1]["judge_agreement"]["per_class"] if headline else {}
    person = (headline[1].get("person_score") or {}).get("per_class", {}) if headline else {}
    for c, index in enumerate(picks):
        part = slice(start, start + len(index))
        start += len(index)
        classes.append(
            GalleryClass(
                name=class_names[c],
                original=real.images[index],
                translated=translated[index],
                cycled=None if cycled is None else cycled[part],
                sources=[real.files[i] for i in index],
                agreement=per_class.get(class_names[c]),
                person=person.get(class_names[c]),
            )
        )
    return classes


def write_gallery(
    out_dir: Path,
    run_dir: Path,
    classes: list[GalleryClass],
    faces: np.ndarray | None,
    facts: dict[str, str],
    set_counts: dict[str, dict[str, int]] | None,
    judge: dict | None,
    tile: int,
) -> dict:
    write_png(out_dir / GALLERY_PNG, gallery_mosaic(classes, faces, tile=tile))
    page = gallery_html(classes, faces, "Translation gallery", facts, set_counts, judge, png_name=GALLERY_PNG)
    (out_dir / GALLERY_HTML).write_text(page)
    (out_dir / GALLERY_MARKER).write_text(json.dumps({"run_dir": str(run_dir.resolve())}, indent=1))
    return {
        "html": GALLERY_HTML,
        "png": GALLERY_PNG,
        "examples_per_class": max((len(c.original) for c in classes), default=0),
        "cycled_back": any(c.cycled is not None for c in classes),
        "person_faces": 0 if faces is None else int(len(faces)),
    }


def _translate_splits(out_dir: Path, dataset: LabelledDataset, forward: Generator, settings: BuildSettings,
                      checkpoint: str, log: logging.Logger,
                      warnings: list[str]) -> tuple[dict[str, ImageSet], dict[str, list[Path]]]:
    """Every split translated and written, with labels.csv: (images per split, their files per split)."""
    class_names = dataset.class_names
    translated: dict[str, ImageSet] = {}
    translated_paths: dict[str, list[Path]] = {}
    rows: list[dict] = []
    for split in settings.splits:
        source = dataset[split]
        for name, count in class_counts(source.labels, class_names).items():
            if count == 0:
                warnings.append(f"class '{name}' has no images in split '{split}'")
                log.warning("%s: %s", dataset.source, warnings[-1])
        images = translate_images(source.images, forward.fn, forward.spec, settings.batch_size,
                                  desc=f"translating {split}")
        translated[split] = ImageSet(images, source.labels, source.files)
        translated_paths[split] = write_translated(out_dir, split, translated[split], class_names, checkpoint,
                                                   settings.image_format, rows)
    write_labels_csv(out_dir / LABELS_CSV, rows)
    return translated, translated_paths


def _write_sets(out_dir: Path, dataset: LabelledDataset, translated: dict[str, ImageSet],
                translated_paths: dict[str, list[Path]], forward: Generator, settings: BuildSettings,
                rng: np.random.Generator) -> tuple[dict[str, dict], list[str]]:
    """The training sets named in settings.sets, from the train split and its translations:
    (per set its folder, counts and sources; the classes the train split lacks)."""
    class_names, spec = dataset.class_names, forward.spec
    real, synthetic = dataset["train"], translated["train"]
    pools = {"real": real, "translated": synthetic}
    recipes = []
    counts = real.counts(len(class_names))
    extra, notes = balance_plan(counts, settings.balanced_target, class_names)
    skipped_classes = [class_names[c] for c in np.flatnonzero(counts == 0)]
    target = int(settings.balanced_target) or int(counts.max())
    # The images real+synthetic adds a translation of and real+classic a copy of: drawn once, when the first
    # of the two is built, so that the rng's other draws (and every earlier run's sets) stay as they were.
    chosen: np.ndarray | None = None

    def sampled() -> np.ndarray:
        nonlocal chosen
        if chosen is None:
            chosen = ratio_sample(synthetic.labels, settings.synthetic_ratio, len(class_names), rng)
        return chosen

    prepare = lambda images: conform(images, spec.image_size, spec.out_channels)  # noqa: E731
    for name in settings.sets:
        if name == "real":
            recipes.append(real_set(real))
        elif name == "synthetic":
            recipes.append(synthetic_set(synthetic))
        elif name == "real+synthetic":
            recipes.append(real_synthetic_set(real, sampled()))
        elif name == "balanced":
            more = lambda images: translate_images(  # noqa: E731
                images, forward.fn, spec, settings.batch_size, desc="balanced: extra translations"
            )
            result = balanced_set(real, synthetic, extra, more, rng, notes)
            pools["gan_extra"] = result.extra
            recipes.append(result.recipe)
        elif name == "classic":
            result = classic_set(real, extra, rng, notes, prepare)
            pools["classic_extra"] = result.extra
            recipes.append(result.recipe)
        elif name == "real+classic":
            result = real_classic_set(real, sampled(), rng, prepare)
            pools["classic_copies"] = result.extra
            recipes.append(result.recipe)
    written = {("translated", i): p for i, p in enumerate(translated_paths["train"])}
    # Real images keep their own size in every set, so that a set's real half is the `real` set: a round
    # trip through the generator's size blurs them (FER's 48 px through 64 and back: a fifth of the
    # pixel-to-pixel contrast gone), and the classifier, tested on unblurred FER, would pay for it. In a
    # mixed set they take the generator's channels; the `real` set keeps the originals as they are.
    same_channels = real.images.shape[3] == spec.out_channels
    writer = SetWriter(
        out_dir,
        pools,
        class_names,
        settings.image_format,
        convert={} if same_channels else {"real": lambda images: conform(images, images.shape[1], spec.out_channels)},
        written=written,
    )
    summary: dict[str, dict] = {}
    for recipe in recipes:
        per_class = writer.write(recipe, native_pools=frozenset({"real"}) if recipe.name == "real" else frozenset())
        summary[recipe.name] = {
            "folder": f"sets/{set_folder(recipe.name)}",
            "counts": per_class,
            "total": int(sum(per_class.values())),
            "from": {pool: int(len(index)) for pool, index in recipe.parts.items()},
            **({"notes": recipe.notes} if recipe.notes else {}),
        }
        if recipe.name in ("balanced", "classic"):
            summary[recipe.name]["target_per_class"] = target
    return summary, skipped_classes


def build_outputs(
    out_dir: Path,
    run_dir: Path,
    dataset: LabelledDataset,
    forward: Generator,
    settings: BuildSettings,
    checkpoint: str,
    backward: Generator | None = None,
    faces: np.ndarray | None = None,
    log: logging.Logger | None = None,
    timings: dict[str, float] | None = None,
) -> dict:
    """Translate the splits, write labels.csv, the training sets and the gallery; return the summary.

    `forward` translates FER -> person; `backward` (optional) person -> FER, for the gallery's
    cycled-back row; `faces` are real person-domain faces (optional, gallery reference row).
    The judge's reading of the translations is classify's (it trains the judge).
    """
    log = log or logging.getLogger("fertransfer.augment")
    timings = timings if timings is not None else {}
    check_settings(settings)
    class_names = dataset.class_names
    missing = [s for s in settings.splits if s not in dataset.splits]
    if missing:
        raise StageError(f"{dataset.source}: no split {', '.join(missing)} (it has {', '.join(dataset.splits)})")
    spec = forward.spec
    check_generator_fits(spec, dataset[settings.splits[0]].images, dataset.source)
    rng = np.random.default_rng(settings.seed)
    ext = settings.image_format
    warnings: list[str] = []

    # 1. Translate every split, keeping label and source file.
    t0 = time.perf_counter()
    translated, translated_paths = _translate_splits(out_dir, dataset, forward, settings, checkpoint, log, warnings)
    seconds = time.perf_counter() - t0
    total = sum(len(t) for t in translated.values())
    timings["translate_s"] = seconds
    log.info("translated %d images in %.1f s (%.1f images/s)", total, seconds, total / max(seconds, 1e-9))

    # 2. Training sets from the train split.
    sets_summary: dict[str, dict] = {}
    skipped_classes: list[str] = []
    if settings.sets:
        t0 = time.perf_counter()
        sets_summary, skipped_classes = _write_sets(out_dir, dataset, translated, translated_paths, forward,
                                                    settings, rng)
        timings["sets_s"] = time.perf_counter() - t0

    # 3. Gallery.
    gallery_split = gallery_split_of(settings.splits)
    judge = None  # the judge's figures are classify's, which rebuilds the gallery with them
    gallery = None
    if settings.gallery_examples > 0:
        t0 = time.perf_counter()
        classes = gallery_classes(
            dataset[gallery_split], translated[gallery_split].images, backward, class_names,
            settings.gallery_examples, settings.seed, judge, settings.batch_size,
        )
        facts = {
            "generator": checkpoint,
            "data": dataset.source,
            "split shown": gallery_split,
            "images translated": f"{total} ({', '.join(f'{s}: {len(t)}' for s, t in translated.items())})",
        }
        set_counts = {name: s["counts"] for name, s in sets_summary.items()}
        gallery = write_gallery(out_dir, run_dir, classes, faces, facts, set_counts, judge, tile=spec.image_size)
        gallery["split"] = gallery_split
        timings["gallery_s"] = time.perf_counter() - t0

    real_shape = "x".join(map(str, dataset[settings.splits[0]].images.shape[1:]))
    return {
        "checkpoint": checkpoint,
        "generator": {"image_size": spec.image_size, "in_channels": spec.in_channels, "out_channels": spec.out_channels},
        "fer": dataset.source,
        "image_format": ext,
        "image_shapes": {
            "real set (original FER)": real_shape,
            "translated and the other sets (their real images at the real set's size)":
                f"{spec.image_size}x{spec.image_size}x{spec.out_channels}",
        },
        "translated": {split: class_counts(t.labels, class_names) for split, t in translated.items()},
        "translated_total": total,
        "translate_images_per_s": round(total / max(seconds, 1e-9), 2),
        "labels_csv": LABELS_CSV,
        "sets": sets_summary,
        "skipped_classes": skipped_classes,
        "warnings": warnings,
        "translation_judge": judge,
        "gallery": gallery,
    }


# --- the gallery again, from a finished stage folder ----------------------------------------


def read_sources(sources: list[str], channels: int, fer_path: str | None, seed: int) -> np.ndarray:
    """Source images by their labels.csv name: files directly, CSV rows via the dataset."""
    images, missing = [], []
    for source in sources:
        try:
            images.append(read_image(source, channels=channels))
        except UnreadableImage:
            missing.append(source)
            images.append(None)
    if missing:
        if not fer_path:
            raise StageError(f"cannot read source image {missing[0]} (and no dataset path recorded)")
        try:
            dataset = load_fer(fer_path, seed)
        except DatasetError as error:
            raise StageError(f"cannot read source image {missing[0]}: {error}") from None
        by_name = {f: (s, i) for s in dataset.splits.values() for i, f in enumerate(s.files)}
        for k, source in enumerate(sources):
            if images[k] is None:
                if source not in by_name:
                    raise StageError(f"source image {source} is in neither the files nor {fer_path}")
                split, i = by_name[source]
                images[k] = conform(split.images[i : i + 1], split.images.shape[1], channels)[0]
    side = images[0].shape[0]
    return np.stack([conform(im[None], side, channels)[0] for im in images])


def gallery_split_of(splits: list[str]) -> str:
    """The split a gallery shows: test when translated (what the judge scores), else the first."""
    return "test" if "test" in splits else splits[0]


@dataclass
class Translations:
    """What a gallery needs of finished translations: their labels.csv (image paths relative to
    it) and what made them. `pipeline gallery` fills it from augment's manifest, classify from
    what it knows (its classes, [data] fer, the generator)."""

    labels_csv: Path
    class_names: tuple[str, ...]
    fer: str | None = None  # the source dataset, for sources that are rows of a CSV
    seed: int = 0
    in_channels: int = 1  # the generator's input (FER) channels
    split: str | None = None  # None: test when translated, else the first split
    set_counts: dict[str, dict[str, int]] | None = None
    checkpoint: str = "?"


def rebuild_gallery(
    translations: Translations,
    out_dir: Path,
    run_dir: Path,
    examples: int,
    backward: Generator | None,
    faces: np.ndarray | None,
    judge: dict | None = None,
) -> dict:
    """gallery.html / gallery.png again from finished translations; `judge`: what classify's judge
    read in them (its `translation_judge`), measured after augment ran."""
    t = translations
    rows = read_labels_csv(t.labels_csv)
    split = t.split or gallery_split_of(list(dict.fromkeys(r["split"] for r in rows)))
    rows = [r for r in rows if r["split"] == split] or rows
    unknown = sorted({r["label"] for r in rows} - set(t.class_names))
    if unknown:
        raise StageError(f"{t.labels_csv}: labels {unknown} are not among the classes {list(t.class_names)}")
    labels = np.array([t.class_names.index(r["label"]) for r in rows], np.int64)
    picks = np.concatenate(pick_examples(labels, len(t.class_names), examples, t.seed))
    chosen = [rows[i] for i in picks]
    originals = read_sources([r["source_file"] for r in chosen], t.in_channels, t.fer, t.seed)
    folder = t.labels_csv.parent
    first = read_image(folder / chosen[0]["file"], channels=3)
    out_channels = 1 if is_gray(first[None]) else 3
    translated = np.stack([read_image(folder / r["file"], channels=out_channels) for r in chosen])
    real = ImageSet(originals, labels[picks], [r["source_file"] for r in chosen])
    # Examples are picked again from the chosen rows alone: all of them, in class order.
    classes = gallery_classes(real, translated, backward, t.class_names, examples, t.seed, judge)
    facts = {"generator": t.checkpoint, "data": t.fer or "?", "split shown": split, "rebuilt from": str(t.labels_csv)}
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_gallery(out_dir, run_dir, classes, faces, facts, t.set_counts, judge, int(translated.shape[1]))


def callable_generator(translator, name: str) -> Generator:
    """A Generator from the cyclegan Translator (anything with translate() and the size attributes)."""
    fn: Callable[[np.ndarray], np.ndarray] = lambda images: translator.translate(  # noqa: E731
        images, batch_size=max(1, len(images)), progress=False
    )
    return Generator(fn, GeneratorSpec.of(translator, name))
