"""`pipeline run augment`: translate labelled FER data into the person's domain and write
training sets and the translation gallery.

Output folder (read by classify; see io.py):

    translated/<split>/<class>/*.png, labels.csv
    sets/{real,synthetic,real_synthetic,balanced,classic}/<class>/*.png
    gallery.html, gallery.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fertransfer.errors import StageError
from fertransfer.options import THREADS_HELP, option
from fertransfer.pipelines.options import DataOptions
from fertransfer.pipelines.stage import Stage, StageContext

from . import SET_NAMES

# The cyclegan stage's final generator weights, inside its stage folder (its summary's "checkpoint").
CYCLEGAN_CHECKPOINT = Path("checkpoints") / "latest.pt"


@dataclass
class AugmentOptions:
    splits: list[str] = option(["train", "test"], "Splits to translate (train, val, test); the training sets come from "
                               "train; the test split's translations are what classify's judge scores.")
    checkpoint: str = option(
        "", "Generator checkpoint; empty = the cyclegan stage's checkpoints/latest.pt in this run.", kind="path"
    )
    faces: str = option(
        "",
        "Folder of the person's real faces for the gallery; empty = the cyclegan stage's domain A "
        "(its faces option, else the extract stage's faces/).",
        kind="path",
    )
    sets: list[str] = option(
        list(SET_NAMES),
        "Training sets to write: real, synthetic, real+synthetic (folder real_synthetic), balanced, classic.",
    )
    synthetic_ratio: float = option(
        1.0, "real+synthetic: share (0..1) of each class's translations added to the real images."
    )
    balanced_target: int = option(
        0, "balanced and classic: images per class to reach (classes above it keep all); 0 = the largest class."
    )
    gallery_examples: int = option(8, "Examples per class in gallery.html and gallery.png; 0 = no gallery.")
    batch_size: int = option(64, "Images per generator call.")
    precision: str = option(
        "auto",
        "Generator arithmetic on a CPU: auto = bf16 where the CPU has native bf16 (AMX / AVX512-BF16, "
        "~3x faster), else fp32. On CUDA the Translator uses bf16 itself.",
        choices=("auto", "fp32", "bf16"),
    )
    image_format: str = option("png", "Format of the written images.", choices=("png", "jpg"))
    threads: int = option(0, THREADS_HELP, execution=True)


def checkpoint_path(ctx: StageContext) -> Path:
    """The `checkpoint` option, else the final generators the cyclegan stage recorded."""
    if ctx.options.checkpoint:
        return ctx.path(ctx.options.checkpoint)
    cyclegan = ctx.upstream("cyclegan")
    recorded = _read_json(cyclegan / "manifest.json").get("summary", {}).get("checkpoint")
    return cyclegan / (recorded or CYCLEGAN_CHECKPOINT)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def person_faces_dir(faces_option: str, checkpoint: Path, resolve) -> Path | None:
    """Where the person's real faces are: the `faces` option, else the domain A folder of the
    cyclegan run the checkpoint belongs to (its manifest), else that run's extract/faces/."""
    if faces_option:
        return resolve(faces_option)
    stage_dir = checkpoint.parent.parent  # <run>/cyclegan/checkpoints/latest.pt
    manifest = _read_json(stage_dir / "manifest.json")
    domain_a = manifest.get("summary", {}).get("domains", {}).get("A")  # a path, or {"path": ...}
    if isinstance(domain_a, dict):
        domain_a = domain_a.get("path")
    candidates = []
    for value in (domain_a, manifest.get("config", {}).get("faces")):
        if isinstance(value, str) and value:
            candidates += [Path(value)] if Path(value).is_absolute() else [resolve(value), stage_dir.parent / value]
    candidates.append(stage_dir.parent / "extract" / "faces")
    return next((c for c in candidates if c.is_dir()), None)


def _autocast_bf16_on_cpu(translator) -> None:
    """Run the Translator's generator under CPU bf16 autocast (it autocasts only on CUDA)."""
    import torch

    plain = translator.generator.forward

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain(x).float()

    translator.generator.forward = forward


def load_generator(path: Path, direction: str, device: str, precision: str = "fp32"):
    """The cyclegan Translator for one direction, as a build.Generator."""
    from fertransfer.cyclegan.tensors import cpu_has_native_bf16
    from fertransfer.cyclegan.translate import Translator

    from .build import callable_generator

    if not path.is_file():
        raise StageError(f"{path}: generator checkpoint not found")
    try:
        translator = Translator.from_checkpoint(path, direction=direction, device=device)
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        raise StageError(f"{path}: cannot load the {direction} generator: {error}") from None
    on_cpu = translator.device.type == "cpu"
    bf16 = on_cpu and (precision == "bf16" or (precision == "auto" and cpu_has_native_bf16()))
    if bf16:
        _autocast_bf16_on_cpu(translator)
    generator = callable_generator(translator, f"{path} ({direction})")
    generator.precision = "bf16" if bf16 or not on_cpu else "fp32"
    return generator


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
    from .build import build_outputs, check_settings, load_faces, load_fer

    o: AugmentOptions = ctx.options
    settings = _settings(o, ctx.run.seed)
    check_settings(settings)
    if o.threads:
        import torch

        torch.set_num_threads(o.threads)  # the runner restores the count after the stage
    checkpoint = checkpoint_path(ctx)
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
    faces_dir = person_faces_dir(o.faces, checkpoint, ctx.path) if o.gallery_examples else None
    if faces_dir is not None:
        spec = forward.spec
        faces = load_faces(faces_dir, o.gallery_examples, spec.image_size, spec.out_channels, ctx.run.seed)
    elif o.gallery_examples:
        ctx.log.warning("no folder of the person's faces found; the gallery has no reference row (set [augment].faces)")
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
    description="Translate labelled FER data into the person's domain; write training sets and a gallery",
    upstream=lambda o: [] if o.checkpoint else ["cyclegan"],
    inputs=lambda o: [o.checkpoint, o.faces],
    data_keys=("fer", "labels", "ferplus"),
    check=_check,
    rewritable=("gallery.html", "gallery.png"),  # `pipeline gallery RUN_DIR` rebuilds them in place
    demo={"gallery_examples": 6},
)
