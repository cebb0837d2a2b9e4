"""The cyclegan stage: CycleGAN between one person's faces (A) and FER images (B).

`model` picks what is trained: CycleGAN (the default), a shared-encoder autoencoder with one
decoder per domain, CUT/FastCUT, or an edit of the person's own nearest crop; every model writes
the same outputs below.

Outputs in <run dir>/cyclegan/: checkpoints/ (step_*.pt full training states, the last few;
latest.pt the generators, which `Translator.from_checkpoint` loads), samples/step_*.png and
samples/final.png (A, G(A), F(G(A)) | B, F(B), G(F(B)) on a fixed held-out batch),
losses.csv, loss_curve.png and swd.csv (SWD of translated and untranslated held-out images
against real target images, both directions), person_score.pt (the person score's domain
classifier; the summary's `translation` holds its figures on translated FER test images).
Interrupted runs continue from the newest valid checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from fertransfer.errors import StageError
from fertransfer.pipelines.options import DataOptions
from fertransfer.pipelines.stage import Consumes, Stage, StageContext

from .options import AUGMENTATIONS, GAN_MODES, GENERATORS, MODELS, CycleganOptions  # noqa: F401  (re-exported: declared in options.py)


def train_config(options: CycleganOptions, seed: int, device: str):
    from .train import TrainConfig

    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(options, f.name)}
    values["load_size"] = options.load_size or -(-options.image_size * 9 // 8)
    values["diffaugment"] = tuple(options.diffaugment)
    return TrainConfig(**values, seed=seed, device=device)


def _expression_classifier(ctx: StageContext, cfg) -> tuple[object | None, Path | None, dict | None]:
    """The frozen classifier of the expression loss, its folder, and what the manifest says of it.

    Trained here on domain B's labelled images (kept in the work folder, so a resumed run
    reuses the very same one), or loaded from `expression_classifier`. Its accuracy is
    measured on FER images it did not train on: the dataset's val split, else a held-out tenth.
    """
    import time

    import numpy as np
    import torch

    from fertransfer.data import load_dataset
    from fertransfer.expression.cnn import CnnConfig, train_cnn
    from fertransfer.expression.models import load_classifier, predict_labels, save_classifier

    from .data import domain_b_classes, holdout_split, load_fer

    o: CycleganOptions = ctx.options
    if o.lambda_expression <= 0:
        return None, None, None
    saved = ctx.out_dir / "expression_classifier"
    size = 48  # FER's own size: the classifier reads faces as the classify stage does
    b_classes = domain_b_classes(ctx.data.labels)  # FER's seven, or FER+'s eight as domain B is labelled
    ferplus = _ferplus_path(ctx)
    fer_path, labels = ctx.path(ctx.data.fer), ctx.data.labels
    fer = load_dataset(fer_path, classes=b_classes, channels=1, size=size, seed=ctx.run.seed, labels=labels,
                       ferplus=ferplus)
    train = load_fer(fer_path, o.fer_splits, o.fer_classes, 1, size, ctx.run.seed, labels, ferplus)
    if "val" in fer.splits and "val" not in o.fer_splits:
        held, held_on = fer["val"], "the dataset's val split"
    else:
        keep, out = holdout_split(len(train), max(1, len(train) // 10), ctx.run.seed + 2)
        train, held, held_on = train.subset(keep), train.subset(out), "a held-out tenth of domain B"
    threads = torch.get_num_threads()
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    try:
        info: dict = {}
        if o.expression_classifier:
            path, info["source"] = ctx.path(o.expression_classifier), f"given: {o.expression_classifier}"
        elif ctx.resuming and _readable_classifier(ctx, saved):
            path, info["source"] = saved, "trained here (kept from the interrupted run)"
        else:
            ctx.log.info("training the expression classifier on %d FER images (%d epochs, width %d)",
                         len(train), o.expression_epochs, o.expression_width)
            config = CnnConfig(width=o.expression_width, epochs=o.expression_epochs, crop=size - size // 12,
                               patience=0, tta="flip", bf16="off")
            t0 = time.perf_counter()
            result = train_cnn(train.images, train.labels, held.images, held.labels, list(b_classes.names), config,
                               seed=cfg.seed, device="cpu" if cfg.device == "cpu" else "auto")
            save_classifier(result.classifier, saved)
            path = saved
            info.update(source="trained here", epochs=o.expression_epochs, width=o.expression_width,
                        train_images=len(train), seconds=round(time.perf_counter() - t0, 1))
        classifier = load_classifier(path)
        if getattr(classifier, "engine", None) != "cnn":
            raise StageError(f"{path}: the expression loss needs a cnn model, not {classifier.engine}")
        if list(classifier.classes) != list(b_classes.names):
            raise StageError(f"{path}: the expression classifier's classes {list(classifier.classes)} differ "
                             f"from domain B's {list(b_classes.names)}")
        predicted, _ = predict_labels(classifier, held.images)
        info.update(held_out=held_on, held_out_images=len(held),
                    held_out_accuracy=round(float(np.mean(predicted == held.labels)), 4))
    finally:
        torch.set_num_threads(threads)
    ctx.log.info("expression classifier (%s): accuracy %.3f on %s (%d images)", info["source"],
                 info["held_out_accuracy"], held_on, len(held))
    return classifier, path, {**info, "model": saved.name if path == saved else str(path)}


def _readable_classifier(ctx: StageContext, folder: Path) -> bool:
    """Whether the expression classifier an interrupted run kept loads; if not, a warning names it
    and it is trained again."""
    from fertransfer.expression.models import load_classifier

    if not (folder / "model.json").is_file():
        return False
    try:
        load_classifier(folder)
        return True
    except Exception as error:  # a truncated model: json, torch or keras errors of many kinds
        ctx.log.warning("%s: the kept expression classifier does not load (%s: %s); training it again", folder,
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        return False


PERSON_SCORER = "person_score.pt"  # the person score's classifier, for classify to score augment's translations


def _held_out_person(ctx: StageContext, held_a):
    """The person's crops that the generator never trained on: the footage held out here, plus
    the extract stage's labelled person_test/ when there is one (all classes, labels unused)."""
    import numpy as np

    from fertransfer.data import load_image_folder

    parts, where = [held_a], [f"{len(held_a)} held out of the footage"]
    person_test = ctx.artifacts.get("extract.person_test")  # consumed when the faces are extract's
    if person_test is not None and person_test.is_dir() and any(person_test.rglob("*.*")):
        images, _ = load_image_folder(person_test, channels=held_a.shape[3], size=held_a.shape[1])
        parts.append(images)
        where.append(f"{len(images)} of extract's person_test/")
    return np.concatenate(parts), " + ".join(where)


def _judge_on_the_person(ctx: StageContext, judge, classes, seen_size: int) -> dict | None:
    """The judge's accuracy on extract's labelled person_test/, brought through the generator's
    size: how well it reads the person's own expressions at all, the yardstick for its agreement
    on translations into the person. None without labelled faces; a set it cannot read is a
    warning, not a failed stage."""
    from fertransfer.data import DatasetError, load_labelled_set
    from fertransfer.expression.judge import judge_accuracy_at_size
    from fertransfer.expression.models import predict_labels

    person_test = ctx.artifacts.get("extract.person_test")
    if person_test is None or not person_test.is_dir() or not any(person_test.rglob("*.*")):
        return None
    try:
        faces, _ = load_labelled_set(person_test, classes, channels=judge.channels, size=seen_size)
    except DatasetError as error:
        ctx.log.warning("the judge's accuracy on the person's own faces not computed: %s", error)
        return None
    rates = judge_accuracy_at_size(lambda x: predict_labels(judge, x)[0], faces.images, faces.labels,
                                   list(classes.names), seen_size, judge.size, judge.channels)
    return {**rates, "folder": str(person_test)}


def _translation_scores(ctx: StageContext, cfg, held_a, held_b, checkpoint: Path) -> dict:
    """The generator of `checkpoint` on FER's test split (a fixed sample): the person score overall
    and per class, its controls, and with `judge` the judge's agreement; the scorer is saved for classify.

    The person score's classifier is trained on the held-out person crops (a part kept out as
    its control) against FER's val split (PublicTest): neither is anything the generator saw.
    """
    import time

    import numpy as np
    import torch

    from fertransfer.data import load_dataset
    from fertransfer.expression.judge import judge_at_judge_size

    from .data import domain_b_classes
    from .person_score import (
        MIN_CROPS,
        PersonScoreConfig,
        blends_note,
        crops_warning,
        person_score_by_class,
        train_person_scorer,
    )
    from .translate import Translator

    o: CycleganOptions = ctx.options
    t0 = time.perf_counter()
    person, person_source = _held_out_person(ctx, held_a)
    result: dict = {"person_crops": len(person), "person_crops_from": person_source}
    if len(person) < MIN_CROPS:
        result["not_computed"] = (f"only {len(person)} held-out person crop(s) ({person_source}); the person score "
                                  f"needs at least {MIN_CROPS}: raise swd_images or give more footage")
        return _not_computed(ctx, result)
    classes = domain_b_classes(ctx.data.labels)
    fer = load_dataset(ctx.path(ctx.data.fer), classes=classes, channels=o.b_channels, size=48, seed=ctx.run.seed,
                       labels=ctx.data.labels, ferplus=_ferplus_path(ctx))
    if "test" not in fer.splits:
        result["not_computed"] = f"{ctx.data.fer} has no test split to translate"
        return _not_computed(ctx, result)

    def chosen(part):  # the classes domain B was trained on
        wanted = [classes.index(name) for name in o.fer_classes]
        return part.subset(np.flatnonzero(np.isin(part.labels, wanted))) if wanted else part

    negatives, negatives_from = (chosen(fer["val"]).images, "FER val (PublicTest)") if "val" in fer.splits else (
        held_b, "domain B's held-out images")
    test = chosen(fer["test"])
    in_split = len(test)
    if 0 < o.eval_images < len(test):
        test = test.subset(np.sort(np.random.default_rng(ctx.run.seed + 3).permutation(len(test))[: o.eval_images]))
    threads = torch.get_num_threads()
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    try:
        warning = crops_warning(len(person))
        if warning:
            ctx.log.warning(warning)
            result["warning"] = warning
        config = PersonScoreConfig(steps=o.person_score_steps, seed=ctx.run.seed, blend_negatives=o.person_score_blends)
        scorer, info = train_person_scorer(person, negatives, cfg.image_size, config, control_fer=test.images)
        translator = Translator.from_checkpoint(checkpoint, "BtoA", cfg.device)
        translated = translator.translate(test.images, progress=True)
        names = list(classes.names)
        result.update(
            split="test", images=len(test), images_in_split=in_split,
            negatives=negatives_from + (f", {o.person_score_blends:.0%} of them hybrids of the person's crops"
                                        if o.person_score_blends else ""),
            person_score=person_score_by_class(scorer, translated, test.labels, names),
            controls={"untranslated_sources": person_score_by_class(scorer, test.images, test.labels, names)["overall"],
                      "held_out_person_crops": info["person_control_score"], "held_out_person_crops_count":
                      info["person_control"],
                      # hybrids of those crops and the test sources, by detail scale: near 0, or a hybrid meets the score
                      "blends": info["blend_control"]},
            classifier={k: v for k, v in info.items() if k != "config"} | {"file": PERSON_SCORER},
        )
        if o.judge:
            from fertransfer.expression.models import load_classifier, predict_labels

            judge = load_classifier(ctx.path(o.judge), device=cfg.device)
            if list(judge.classes) != names:
                raise StageError(f"[cyclegan].judge {o.judge}: its classes {list(judge.classes)} are not domain "
                                 f"B's {names}")
            result["judge"] = {"model": o.judge, **judge_at_judge_size(
                lambda x: predict_labels(judge, x)[0], translated, test.images, test.labels, names, judge.size,
                judge.channels)}
            on_person = _judge_on_the_person(ctx, judge, classes, cfg.image_size)
            if on_person is not None:
                result["judge"]["person_accuracy"] = on_person
    finally:
        torch.set_num_threads(threads)
    # Saved with what a reader of its scores needs to know (its controls, a warning), for classify.
    about = {"person_crops": len(person), "held_out_person_crops": info["person_control_score"],
             "held_out_person_crops_count": info["person_control"], "blends": info["blend_control"],
             "warning": result.get("warning")}
    torch.save({**scorer.state_dict(), "about": about}, ctx.out_dir / PERSON_SCORER)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    agreement = (result.get("judge") or {}).get("judge_agreement", {}).get("overall")
    ctx.log.info("person score on %d translated test images: %.3f (controls: untranslated %.3f, held-out person "
                 "crops %s, hybrids %s)%s", len(test), result["person_score"]["overall"],
                 result["controls"]["untranslated_sources"], result["controls"]["held_out_person_crops"],
                 blends_note(result["controls"]["blends"]),
                 "" if agreement is None else f"; judge agreement {agreement:.3f}"
                 + _on_person_note((result.get("judge") or {}).get("person_accuracy")))
    return result


def _on_person_note(on_person: dict | None) -> str:
    return "" if not on_person else (f" (the judge reads the person's own {on_person['images']} labelled faces at "
                                     f"{on_person['overall']:.3f})")


def _not_computed(ctx: StageContext, result: dict) -> dict:
    """No person score: the reason in the log, the manifest and person_score.pt (which classify reads)."""
    import torch

    ctx.log.warning("person score not computed: %s", result["not_computed"])
    torch.save({"not_computed": result["not_computed"]}, ctx.out_dir / PERSON_SCORER)
    return result


def _run_torchrun(ctx: StageContext, cfg, data: dict, expression_model: str | None) -> dict:
    """Launch the same training loop in `processes` ranks with torchrun; rank 0's summary."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"config": dataclasses.asdict(cfg), "data": data, "out_dir": str(ctx.out_dir),
                "resume": ctx.resuming, "summary": str(Path(tmp) / "summary.json"),
                "expression_classifier": expression_model}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={ctx.options.processes}", "-m", "fertransfer.cyclegan.train",
                   str(Path(tmp) / "spec.json")]
        ctx.log.info("launching %s", " ".join(command))
        if subprocess.run(command).returncode != 0:
            raise StageError(f"torchrun training with {ctx.options.processes} processes failed (see its output above)")
        return json.loads((Path(tmp) / "summary.json").read_text())


def run(ctx: StageContext) -> dict:
    import csv
    import shutil
    import time

    from .data import load_domains
    from .train import plot_losses, train

    o: CycleganOptions = ctx.options
    cfg = train_config(o, ctx.run.seed, ctx.run.device)
    data = _domain_spec(ctx, cfg)
    t0 = time.perf_counter()
    domains = load_domains(**data)
    ctx.timings["load_seconds"] = time.perf_counter() - t0
    ctx.log.info("domain A: %d train + %d held out; domain B: %d train + %d held out",
                 len(domains.train_a), len(domains.held_a), len(domains.train_b), len(domains.held_b))
    classifier, classifier_path, expression_info = _expression_classifier(ctx, cfg)
    if o.processes > 1:
        del domains  # each rank loads its own copy
        summary = _run_torchrun(ctx, cfg, data, str(classifier_path) if classifier_path else None)
        domains_sources = None
    else:
        from .expression import ExpressionConsistency

        expression = ExpressionConsistency(classifier) if classifier is not None else None
        summary = train(cfg, domains, ctx.out_dir, resume=ctx.resuming, expression=expression)
        domains_sources = domains.sources
    if o.processes > 1:
        domains = load_domains(**data)  # the held-out images, again (each rank loaded its own)
    translation = _translation_scores(ctx, cfg, domains.held_a, domains.held_b, ctx.out_dir / "checkpoints" / "latest.pt")
    ctx.timings["translation_scores_seconds"] = translation.get("seconds", 0.0)
    ctx.timings["train_seconds"] = summary.get("train_seconds", 0.0)

    out = ctx.out_dir
    plot_losses(out / "losses.csv", out / "loss_curve.png")
    final_grid = out / "samples" / f"step_{summary.get('steps', cfg.steps):06d}.png"
    if final_grid.exists():
        shutil.copyfile(final_grid, out / "samples" / "final.png")
    with open(out / "swd.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    swd_table = None
    if rows:
        last = rows[-1]
        swd_table = {
            "step": int(last["step"]),
            **{d: {"translated": float(last[f"{d}_translated"]), "untranslated": float(last[f"{d}_untranslated"])}
               for d in ("AtoB", "BtoA")},
        }
        ctx.log.info("SWD x1e3 at step %s: AtoB %.1f (untranslated %.1f), BtoA %.1f (untranslated %.1f)",
                     last["step"], swd_table["AtoB"]["translated"], swd_table["AtoB"]["untranslated"],
                     swd_table["BtoA"]["translated"], swd_table["BtoA"]["untranslated"])
    summary.pop("swd", None)
    return {
        **summary,
        "model": cfg.model,
        "generator": _generator_name(cfg),
        "domains": domains_sources or {"A": data["faces"], "B": data["fer"]},
        "swd": swd_table,
        "translation": translation,
        "expression_classifier": expression_info,
        "checkpoint": "checkpoints/latest.pt",
        "sample_grid": "samples/final.png" if (out / "samples" / "final.png").exists() else None,
        "loss_curve": "loss_curve.png",
    }


def _domain_spec(ctx: StageContext, cfg) -> dict:
    """What `load_domains` reads (also what torchrun's ranks are given)."""
    o: CycleganOptions = ctx.options
    return {
        "faces": str(ctx.artifact("extract.faces")),  # domain A: [data] faces, else extract's
        "fer": str(ctx.path(ctx.data.fer)), "fer_splits": list(o.fer_splits),
        "fer_classes": list(o.fer_classes), "a_channels": o.a_channels, "b_channels": o.b_channels,
        "image_size": cfg.image_size, "load_size": cfg.load_size, "holdout": o.swd_images, "seed": ctx.run.seed,
        "labels": ctx.data.labels, "ferplus": _ferplus_path(ctx),
    }


def rescore(ctx: StageContext, checkpoint: Path) -> dict:
    """A finished run's final evaluation done again, under `ctx.options`, for the generator of
    `checkpoint`: another person score (e.g. `person_score_blends`), judge or test sample, no
    training (experiments/frontier.py --rescore). The same held-out crops and test faces as the
    run's when the options that pick them are its own; person_score.pt goes to `ctx.out_dir`."""
    from .data import load_domains

    cfg = train_config(ctx.options, ctx.run.seed, ctx.run.device)
    domains = load_domains(**_domain_spec(ctx, cfg))
    return _translation_scores(ctx, cfg, domains.held_a, domains.held_b, Path(checkpoint))


def evaluate_again(ctx: StageContext, summary: dict) -> dict:
    """A finished run whose judge or person score options changed (`EVALUATION_OPTIONS`): its
    final evaluation again, on its own generator, in a copy of its folder; the training is kept."""
    translation = rescore(ctx, ctx.out_dir / "checkpoints" / "latest.pt")
    ctx.timings["translation_scores_seconds"] = translation.get("seconds", 0.0)
    return {**summary, "translation": translation}


# What only the final evaluation reads: changing them evaluates a finished run again, no training.
EVALUATION_OPTIONS = ("judge", "eval_images", "person_score_steps", "person_score_blends")


def _generator_name(cfg) -> str:
    """What translates FER -> person, in the manifest's words."""
    if cfg.model == "autoencoder":
        return f"shared encoder, bottleneck {cfg.bottleneck}"
    if cfg.model == "reference":
        return f"residual resnet_6blocks_resize editing the nearest of {cfg.reference_bank or 'all'} person crops"
    return cfg.generator


def _ferplus_path(ctx: StageContext) -> str | None:
    """[data].ferplus resolved, when labels = "ferplus" (`check` makes sure it is set)."""
    return str(ctx.path(ctx.data.ferplus)) if ctx.data.labels == "ferplus" else None


def _consumes(options: CycleganOptions, data: DataOptions) -> list[Consumes]:
    """The person's faces ([data] faces, else extract's); with extract's faces also its labelled
    person_test/ when there is one: held-out crops for the person score."""
    needs = [Consumes("extract.faces", data.faces)]
    return needs if data.faces else [*needs, Consumes("extract.person_test", optional=True)]


def _inputs(options: CycleganOptions) -> list[str]:
    return [p for p in (options.expression_classifier, options.judge) if p]


def _check(options: CycleganOptions, config_dir: Path, data: DataOptions) -> list[str]:
    """Problems found without reading any images (all of them: `run` checks none again)."""
    problems = []
    smallest = 3 * 2**options.n_layers  # the PatchGAN's last instance norm needs more than one pixel
    if options.image_size < smallest:
        problems.append(f"image_size: {options.image_size} is too small for a PatchGAN with n_layers = "
                        f"{options.n_layers}: use at least {smallest} (or fewer layers)")
    if options.load_size is not None and options.load_size < options.image_size:
        problems.append(f"load_size: {options.load_size} is smaller than image_size {options.image_size}")
    if options.model == "autoencoder" and options.image_size % 16:
        problems.append(f"model = \"autoencoder\" needs an image_size that is a multiple of 16, got {options.image_size}")
    unknown = [name for name in options.diffaugment if name not in AUGMENTATIONS]
    if unknown:
        problems.append(f"diffaugment: unknown {', '.join(map(repr, unknown))}; known: {', '.join(AUGMENTATIONS)}")
    if options.model in ("cut", "fastcut") and not options.generator.startswith("resnet"):
        problems.append(f"model = \"{options.model}\" reads PatchNCE features from a ResNet generator's encoder; "
                        f"generator {options.generator!r} has none: use one of "
                        f"{', '.join(g for g in GENERATORS if g.startswith('resnet'))}")

    if options.lambda_expression > 0 and not options.expression_classifier and data.fer:
        fer = Path(data.fer).expanduser()
        fer = fer if fer.is_absolute() else config_dir / fer
        if fer.is_dir() and not any(d.is_dir() for d in fer.iterdir()):
            problems.append(f"lambda_expression > 0 trains a classifier on domain B's labels, but {data.fer} has "
                            "no class or split folders (no labels): give expression_classifier or set it to 0")
    return problems


def _resume_point(work: Path) -> str | None:
    """The newest full training checkpoint of an interrupted run (by name: no torch import for `status`)."""
    steps = [int(m.group(1)) for p in (work / "checkpoints").glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))]
    return f"step {max(steps)}" if steps else None


STAGE = Stage(
    name="cyclegan",
    options=CycleganOptions,
    run=run,
    outputs=("checkpoints/latest.pt", "losses.csv", "swd.csv"),
    description="CycleGAN between the person's faces (A) and FER images (B): checkpoints, samples, SWD",
    consumes=_consumes,
    produces={"generator": "checkpoints/latest.pt", "person_scorer": PERSON_SCORER},
    inputs=_inputs,
    data_keys=("fer", "labels", "ferplus", "faces"),
    check=_check,
    resumable=True,
    resume_point=_resume_point,
    evaluation_options=EVALUATION_OPTIONS,
    evaluate=evaluate_again,
    demo={
        "image_size": 32, "ngf": 16, "ndf": 16, "steps": 600,
        "checkpoint_every": 150, "sample_every": 150, "swd_images": 32,
    },
)
