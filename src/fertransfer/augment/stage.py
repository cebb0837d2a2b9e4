"""`pipeline run augment`: translate labelled FER data into the person's domain and write
training sets and the translation gallery.

Output folder (read by classify; see io.py):

    translated/<split>/<class>/*.png, labels.csv
    sets/{real,synthetic,real_synthetic,balanced,classic}/<class>/*.png
    gallery.html, gallery.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fertransfer.options import THREADS_HELP, option
from fertransfer.pipelines.options import DataOptions
from fertransfer.pipelines.stage import Consumes, Stage, StageContext

from . import DEFAULT_SETS
from .generators import load_generator
from .io import LABELS_CSV


@dataclass
class AugmentOptions:
    splits: list[str] = option(["train", "test"], "Splits to translate (train, val, test); the training sets come from "
                               "train; the test split's translations are what classify's judge scores.")
    checkpoint: str = option(
        "", "Generator checkpoint; empty = the cyclegan stage's checkpoints/latest.pt in this run.", kind="path"
    )
    sets: list[str] = option(
        list(DEFAULT_SETS),
        "Training sets to write: real, synthetic, real+synthetic (folder real_synthetic), balanced, classic, "
        "real+classic (real+synthetic's control: a classic augmentation where it has a translation).",
    )
    synthetic_ratio: float = option(
        1.0, "real+synthetic: share (0..1) of each class's translations added to the real images "
        "(real+classic adds copies of the same images).", ge=0, le=1,
    )
    balanced_target: int = option(
        0, "balanced and classic: images per class to reach (classes above it keep all); 0 = the largest class.", ge=0,
    )
    gallery_examples: int = option(8, "Examples per class in gallery.html and gallery.png; 0 = no gallery.", ge=0)
    batch_size: int = option(64, "Images per generator call.", ge=1)
    precision: str = option(
        "auto",
        "Generator arithmetic on a CPU: auto = bf16 where the CPU has native bf16 (AMX / AVX512-BF16, "
        "~3x faster), else fp32. On CUDA the Translator uses bf16 itself.",
        choices=("auto", "fp32", "bf16"),
    )
    image_format: str = option("png", "Format of the written images.", choices=("png", "jpg"))
    threads: int = option(0, THREADS_HELP, execution=True, ge=0)


def _settings(o: AugmentOptions, seed: int):
    from .build import BuildSettings

    return BuildSettings(splits=list(o.splits), sets=list(o.sets), synthetic_ratio=o.synthetic_ratio,
                         balanced_target=o.balanced_target, gallery_examples=o.gallery_examples,
                         batch_size=o.batch_size, image_format=o.image_format, seed=seed)


def _check(o: AugmentOptions, config_dir: Path, data: DataOptions) -> list[str]:
    """Problems found without reading data (the runner checks every stage before any runs)."""
    from .build import settings_problems

    problems = settings_problems(_settings(o, 0))
    if o.threads < 0:
        problems.append(f"threads: {o.threads} is negative")
    return problems


def run(ctx: StageContext) -> dict:
    from .build import build_outputs, load_faces, load_fer

    o: AugmentOptions = ctx.options
    settings = _settings(o, ctx.run.seed)
    if o.threads:
        import torch

        torch.set_num_threads(o.threads)  # the runner restores the count after the stage
    checkpoint = ctx.artifact("cyclegan.generator")
    forward = load_generator(checkpoint, "BtoA", ctx.run.device, o.precision)
    backward = load_generator(checkpoint, "AtoB", ctx.run.device, o.precision) if o.gallery_examples else None
    data = ctx.data
    dataset = load_fer(ctx.path(data.fer), ctx.run.seed, data.labels,
                       ctx.path(data.ferplus) if data.labels == "ferplus" else None)
    if dataset.dropped:
        ctx.log.info("FER+ labels: %d image(s) dropped (%s)", sum(dataset.dropped.values()),
                     ", ".join(f"{k}: {v}" for k, v in dataset.dropped.items()))
    ctx.log.info("%s: %s", dataset.source, dataset.counts())
    faces = None
    faces_dir = ctx.artifact("extract.faces") if o.gallery_examples else None
    if faces_dir is not None and faces_dir.is_dir():
        spec = forward.spec
        faces = load_faces(faces_dir, o.gallery_examples, spec.image_size, spec.out_channels, ctx.run.seed)
    elif o.gallery_examples:
        ctx.log.warning("no folder of the person's faces found; the gallery has no reference row (set [data].faces)")
        faces_dir = None
    summary = build_outputs(
        ctx.out_dir,
        ctx.run_dir,
        dataset,
        forward,
        settings,
        checkpoint=str(checkpoint.resolve()),
        backward=backward,
        faces=faces,
        log=ctx.log,
        timings=ctx.timings,
    )
    summary["faces"] = str(faces_dir.resolve()) if faces_dir else None
    summary["labels"] = dataset.labels
    if dataset.dropped:
        summary["ferplus_dropped"] = dataset.dropped
    summary["precision"] = forward.precision
    if not summary["translation_judge"]:
        summary["translation_judge_note"] = ("measured by classify with its model trained on real FER; its copy of "
                                             "the gallery (classify/gallery/) and `pipeline gallery RUN_DIR` show it")
    return summary


STAGE = Stage(
    name="augment",
    options=AugmentOptions,
    run=run,
    outputs=("labels.csv",),
    description="Translate labelled FER data into the person's domain; write training sets and a gallery",
    consumes=lambda o, data: [Consumes("cyclegan.generator", o.checkpoint),
                              *([Consumes("extract.faces", data.faces, optional=True)] if o.gallery_examples else [])],
    produces={"translations": LABELS_CSV, "sets": "sets", "gallery": "gallery.html"},
    inputs=lambda o: [o.checkpoint],
    data_keys=("fer", "labels", "ferplus", "faces"),
    check=_check,
    rewritable=("gallery.html", "gallery.png"),  # `pipeline gallery RUN_DIR` rebuilds them in place
    demo={"gallery_examples": 6},
)
