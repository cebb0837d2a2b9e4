"""The classify stage: train one engine per training set, evaluate honestly, compare.

Output folder (``<run dir>/classify/``)::

    metrics.json        every training set's metrics, keyed by set name
    report.md           one section per training set, then the comparison
    comparison.{md,csv,png}  accuracy, macro-F1 and recall per class, one row/bar group per set
                        (FER test and, with `person_test`, the person's faces side by side)
    confusion_<set>.png, curves_<set>.png   confusion matrix (counts, row-normalised); loss/accuracy/lr per epoch
    confusion_<set>_person.png   the confusion matrix on the person's faces (with `person_test`)
    <set>/model/        the trained model (model.json + weights); `pipeline predict --model` takes it
    <set>/metrics.json  val, test (and person) metrics, training details, per-epoch history

Selection (best epoch, early stopping, AutoKeras trials) only looks at the validation split;
the test split and the person's faces are scored once per trained model, at the end.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fertransfer.errors import StageError
from fertransfer.pipelines.options import DataOptions
from fertransfer.pipelines.stage import Consumes, Stage, StageContext

from .options import ENGINES, EXTRACT, ClassifyOptions  # noqa: F401  (re-exported: declared in options.py)


def _consumes(options: ClassifyOptions, data: DataOptions) -> list[Consumes]:
    """extract's held-out faces (or a folder standing in for them); augment's training sets; its
    translations for the judge, when augment is used or a judge is named; and, for the judge's
    copy of the gallery, the generator (cycled-back row) and the person's faces when there."""
    needs = []
    if options.person_test:
        needs.append(Consumes("extract.person_test", "" if options.person_test == EXTRACT else options.person_test))
    if any(name != "real" for name in options.train_sets):
        needs.append(Consumes("augment.sets"))
    if options.judge or any(name != "real" for name in options.train_sets):
        needs += [Consumes("augment.translations"), Consumes("cyclegan.generator", optional=True),
                  Consumes("extract.faces", data.faces, optional=True)]
    return needs


def _class_set(data: DataOptions):
    from fertransfer.data import FER, FERPLUS, class_set

    return class_set(data.classes, default=FERPLUS if data.labels == "ferplus" else FER)


def _check(options: ClassifyOptions, config_dir: Path, data: DataOptions) -> list[str]:
    """Problems found without reading data (the runner checks every stage before any runs)."""
    from fertransfer.augment import SET_NAMES, set_folder

    problems = []
    classes = _class_set(data)
    unknown = [c for c in options.leave_out if classes.index(c) is None]
    if unknown:
        problems.append(f"leave_out: unknown class(es) {unknown}; classes: {list(classes.names)}")
    known = {*SET_NAMES, *(set_folder(name) for name in SET_NAMES)}  # real+synthetic or its folder name
    unknown = [name for name in options.train_sets if name not in known]
    if unknown:
        problems.append(f"train_sets: unknown set(s) {', '.join(unknown)}; known: {', '.join(SET_NAMES)}")
    if not options.train_sets:
        problems.append("train_sets: empty; name at least one set (e.g. [\"real\"])")
    elif len(set(options.train_sets)) != len(options.train_sets):
        problems.append(f"train_sets: a set is named twice: {options.train_sets}")
    for name in ("epochs", "batch_size", "width", "max_trials"):
        if getattr(options, name) < 1:
            problems.append(f"{name}: must be at least 1, got {getattr(options, name)}")
    if options.engine == "autokeras":
        problems += _check_autokeras(options)
    if options.size < 16:
        problems.append(f"size: {options.size} px is too small for the CNN (at least 16)")
    if not 0 <= options.ema < 1:
        problems.append(f"ema: a decay in [0, 1), got {options.ema}")
    for name in ("time_budget_minutes", "train_limit", "patience", "weight_decay", "label_smoothing"):
        if getattr(options, name) < 0:
            problems.append(f"{name}: must not be negative, got {getattr(options, name)}")
    return problems


def _check_autokeras(options: ClassifyOptions) -> list[str]:
    """The search's own settings, and a time budget that holds at least one trial."""
    from .automl import SECONDS_PER_TRIAL_IMAGE, SPACES, smallest_budget_minutes

    if options.automl_space not in SPACES:  # the config's choices catch it first; this guards the API
        return [f"automl_space: unknown search space {options.automl_space!r}; known: {', '.join(SPACES)}"]
    problems = []
    if not 0 < options.automl_search_share <= 1:
        problems.append(f"automl_search_share: a share in (0, 1], got {options.automl_search_share}")
    for name in ("automl_trial_images", "automl_final_epochs"):
        if getattr(options, name) < 0:
            problems.append(f"{name}: must not be negative, got {getattr(options, name)}")
    if problems or options.time_budget_minutes <= 0:
        return problems
    # One trial's images: fer_cnn's subset, or (convblock) the whole set, FER2013's 28,709 unless limited.
    images = options.automl_trial_images if options.automl_space == "fer_cnn" else 0
    images = min(x for x in (images, options.train_limit) if x > 0) if images or options.train_limit else 28709
    need = smallest_budget_minutes(options.automl_space, options.epochs, images, options.automl_search_share)
    if options.time_budget_minutes < need:
        cost = SECONDS_PER_TRIAL_IMAGE[options.automl_space] * 1000
        share = (f" of which automl_search_share {options.automl_search_share} searches"
                 if options.automl_space == "fer_cnn" else "")
        problems.append(
            f"time_budget_minutes: {options.time_budget_minutes} min is too small for one {options.automl_space} "
            f"trial of {options.epochs} epoch(s) on {images} images{share}: at about {cost:.0f} ms per image and "
            f"epoch (one CPU thread) it needs at least {need:.1f} min; raise it, or lower epochs or "
            f"automl_trial_images/train_limit")
    return problems


def _inputs(options: ClassifyOptions) -> list[str]:
    return [options.person_test] if options.person_test not in ("", EXTRACT) else []


def _settings(options: ClassifyOptions, ctx: StageContext):
    from .automl import AutoKerasConfig
    from .cnn import CNN_OPTIONS, CnnConfig
    from .experiments import EngineSettings

    cnn = CnnConfig(**{name: getattr(options, name) for name in CNN_OPTIONS}, crop=max(8, options.size - options.size // 12))
    automl = AutoKerasConfig(max_trials=options.max_trials, epochs=options.epochs,
                             time_budget_minutes=options.time_budget_minutes, block=options.automl_block,
                             batch_size=options.batch_size, space=options.automl_space,
                             trial_images=options.automl_trial_images, search_share=options.automl_search_share,
                             final_epochs=options.automl_final_epochs)
    return EngineSettings(options.engine, cnn, automl, seed=ctx.run.seed, device=ctx.run.device)


def _load_sets(ctx: StageContext, options: ClassifyOptions, classes):
    """The real dataset (for val/test and the 'real' set) and every requested training set."""
    from fertransfer.augment import set_folder
    from fertransfer.data import load_dataset

    data = ctx.data
    real = load_dataset(ctx.path(data.fer), classes=classes, channels=options.channels, size=options.size,
                        seed=ctx.run.seed, labels=data.labels,
                        ferplus=ctx.path(data.ferplus) if data.labels == "ferplus" else None)
    if real.dropped:
        ctx.log.info("FER+ labels: %d image(s) of %s dropped (%s)", sum(real.dropped.values()), data.fer,
                     ", ".join(f"{k}: {v}" for k, v in real.dropped.items()))
    if "val" not in real.splits:
        raise StageError(f"{data.fer}: no validation split (model selection needs one)")
    train_sets = {}
    for name in options.train_sets:
        if name == "real":
            train_sets[name] = real["train"]
            continue
        sets = ctx.artifact("augment.sets")
        folder = sets / set_folder(name)
        if not folder.is_dir():
            available = sorted(p.name for p in sets.glob("*") if p.is_dir())
            raise StageError(f"{folder}: no training set '{name}' from augment (available: {', '.join(available) or 'none'})")
        train_sets[name] = load_dataset(folder, classes=classes, channels=options.channels, size=options.size,
                                        val_fraction=0, test_fraction=0)["train"]
    return real, train_sets


def _load_person(ctx: StageContext, options: ClassifyOptions, classes, dropped: list[str]):
    """The person's labelled faces, converted like every input; None without `person_test`.

    Checked before any training: a missing or empty set, or one whose classes are not the
    model's, stops the stage.
    """
    from fertransfer.data import DatasetError, class_folder_names, load_labelled_set

    from . import experiments as ex
    from .evaluate import class_mismatch, classes_differ, present_classes

    if not options.person_test:
        return None, None
    path = ctx.artifact("extract.person_test")
    if options.person_test == EXTRACT and not path.is_dir():
        raise StageError(f"[classify].person_test = \"extract\": {path} does not exist (this extract output has "
                         "no held-out person set)")
    kept = [c for c in classes.names if c not in dropped]
    where = f"[classify].person_test: {path}"
    try:
        found = class_folder_names(path)
        if found is not None and any(classes.index(name) is None for name in found):
            raise StageError(class_mismatch(where, found, kept))
        person, part = load_labelled_set(path, classes=classes, channels=options.channels, size=options.size)
    except DatasetError as error:
        raise StageError(f"[classify].person_test: {error}") from None
    present = present_classes(person.labels, classes)
    if classes_differ(present, classes, dropped):
        raise StageError(class_mismatch(where, [c for c in present if c not in dropped], kept))
    if dropped:
        person = ex.leave_out(person, list(classes.names), dropped)[0]
    if len(person) == 0:
        raise StageError(f"{where}: no images of the classes [{', '.join(kept)}]")
    ctx.log.info("person_test: %d images of the person (%s of %s)", len(person), part, path)
    return person, f"{path}, {part}, {len(person)} images"


def run(ctx: StageContext) -> dict:
    from datetime import datetime, timezone

    import numpy as np

    from fertransfer.atomic import atomic_write
    from fertransfer.augment import set_folder
    from fertransfer.pipelines.runner import machine_description

    from . import experiments as ex
    from .evaluate import plot_confusion, plot_history, report_markdown, score
    from .models import predict_labels, save_classifier, write_model_card

    options: ClassifyOptions = ctx.options
    classes_set = _class_set(ctx.data)
    classes = list(classes_set.names)
    dropped = [classes_set.names[classes_set.index(c)] for c in options.leave_out]
    person, person_source = _load_person(ctx, options, classes_set, dropped)
    real, train_sets = _load_sets(ctx, options, classes_set)
    settings = _settings(options, ctx)
    evaluation = {split: real[split] for split in ("val", "test") if split in real.splits}
    reference = real["train"]
    if dropped:
        evaluation = {s: ex.leave_out(data, classes, dropped)[0] for s, data in evaluation.items()}
        reference, kept = ex.leave_out(reference, classes, dropped)
    else:
        kept = classes
    majority = int(reference.counts(len(kept)).argmax())

    results: dict[str, dict] = {}
    for name, train in train_sets.items():
        slug = set_folder(name)  # real+synthetic -> real_synthetic, as augment names its folders
        folder = ctx.out_dir / slug
        if ctx.resuming and (folder / "metrics.json").is_file():
            ctx.log.info("%s: already trained in the interrupted run, kept", name)
            results[name] = json.loads((folder / "metrics.json").read_text())
            continue
        folder.mkdir(parents=True, exist_ok=True)
        if dropped:
            train = ex.leave_out(train, classes, dropped)[0]
        train = ex.limit(train, options.train_limit, ctx.run.seed)
        original_images = len(train)
        if options.oversample:
            train = ex.oversample(train, len(kept), ctx.run.seed)
        if len(train) == 0:
            raise StageError(f"training set '{name}' has no images of the classes {kept}")
        ctx.log.info("%s: training %s on %d images (%s)", name, options.engine, len(train),
                     ", ".join(f"{c} {n}" for c, n in zip(kept, train.counts(len(kept)).tolist())))
        if options.two_tier:
            trained = ex.train_two_tier(settings, train, evaluation["val"], kept, folder)
        else:
            checkpoint_file = folder / "checkpoint.pt"
            checkpoint = resume = None
            if options.engine == "cnn":
                import torch

                def checkpoint(state, path=checkpoint_file):
                    atomic_write(path, lambda handle: torch.save(state, handle))

                if ctx.resuming and checkpoint_file.is_file():
                    resume = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
            trained = ex.train_flat(settings, train, evaluation["val"], kept, folder, checkpoint, resume)
            checkpoint_file.unlink(missing_ok=True)
        save_classifier(trained.classifier, folder / "model")

        metrics = {"engine": "two_tier/" + options.engine if options.two_tier else options.engine,
                   "train_set": name, "classes": kept,
                   "training": {"train_images": len(train), "train_images_before_oversampling": original_images,
                                "train_counts": dict(zip(kept, train.counts(len(kept)).tolist())), **trained.info}}
        # Scored once, after training and selection are over.
        for split, data in evaluation.items():
            labels, _ = predict_labels(trained.classifier, data.images)
            metrics[split] = score(data.labels, labels, kept, majority)
        if person is not None:
            labels, _ = predict_labels(trained.classifier, person.images)
            metrics["person"] = score(person.labels, labels, kept, majority)
            metrics["person"]["source"] = person_source
        fer = ctx.data.fer
        data_source = str(ctx.path(fer)) if name == "real" else f"augment set '{name}' (val/test: {fer})"
        write_model_card(folder / "model", {
            "name": name, "data": data_source, "labels": real.labels, "dropped": real.dropped, "classes": kept,
            "engine": metrics["engine"], "train_counts": metrics["training"]["train_counts"],
            "seconds": trained.info.get("seconds", 0), "machine": machine_description(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "metrics": {s: {"images": len(d), "accuracy": metrics[s]["accuracy"], "macro_f1": metrics[s]["macro_f1"]}
                        for s, d in evaluation.items()}})
        final = "test" if "test" in metrics else "val"
        plot_confusion(metrics[final]["confusion_matrix"], kept, ctx.out_dir / f"confusion_{slug}.png",
                       f"{name}: {final} accuracy {metrics[final]['accuracy']:.3f}, macro-F1 {metrics[final]['macro_f1']:.3f}")
        if person is not None:
            plot_confusion(metrics["person"]["confusion_matrix"], kept, ctx.out_dir / f"confusion_{slug}_person.png",
                           f"{name}: person accuracy {metrics['person']['accuracy']:.3f}, "
                           f"macro-F1 {metrics['person']['macro_f1']:.3f} ({len(person)} images)")
        if trained.history:
            plot_history(trained.history, ctx.out_dir / f"curves_{slug}.png", f"{name} ({metrics['engine']})",
                         trained.info.get("best_epoch"))
        search = trained.info.get("search")
        if search and search.get("trials"):
            from .automl import plot_search

            plot_search(search["trials"], ctx.out_dir / f"search_{slug}.png",
                        f"{name}: AutoKeras {search['space']} search, {len(search['trials'])} trials")
        pictures = (f"confusion_{slug}.png", f"confusion_{slug}_person.png", f"curves_{slug}.png",
                    f"search_{slug}.png")
        metrics["pictures"] = [p for p in pictures if (ctx.out_dir / p).exists()]
        metrics["history"] = trained.history
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        ctx.timings[f"train_{name}"] = float(trained.info.get("seconds", 0))
        ctx.log.info("%s: %s accuracy %.4f, macro-F1 %.4f", name, final, metrics[final]["accuracy"],
                     metrics[final]["macro_f1"])
        if person is not None:
            ctx.log.info("%s: person accuracy %.4f, macro-F1 %.4f", name, metrics["person"]["accuracy"],
                         metrics["person"]["macro_f1"])
        results[name] = metrics

    judge = _translation_judge(ctx, options, classes_set, dropped)

    final = "test" if "test" in evaluation else "val"
    rows = ex.comparison_rows(results, final)
    table = ex.comparison_markdown(rows, final, person_source or "")
    (ctx.out_dir / "comparison.md").write_text(table)
    with open(ctx.out_dir / "comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ex.plot_comparison(rows, ctx.out_dir / "comparison.png", final)
    (ctx.out_dir / "metrics.json").write_text(json.dumps({k: {s: v for s, v in m.items() if s != "history"}
                                                          for k, m in results.items()}, indent=2, default=float))
    parts = [report_markdown(name, metrics) + _search_markdown(metrics) for name, metrics in results.items()]
    (ctx.out_dir / "report.md").write_text("\n\n".join([*parts, "# comparison\n\n" + table + "\n![comparison](comparison.png)\n"]))

    scored = {**evaluation, **({"person": person} if person is not None else {})}
    return {
        "engine": options.engine,
        "classes": kept,
        "labels": real.labels,
        **({"ferplus_dropped": real.dropped} if real.dropped else {}),
        "evaluated_on": {s: len(d) for s, d in scored.items()},
        "train_sets": {
            name: {"train_images": m["training"]["train_images"], "best_epoch": m["training"].get("best_epoch"),
                   "stopped": m["training"].get("stopped"), "seconds": round(float(m["training"].get("seconds", 0)), 1),
                   **{f"{s}_accuracy": round(m[s]["accuracy"], 4) for s in ("val", "test", "person") if s in m},
                   **{f"{s}_macro_f1": round(m[s]["macro_f1"], 4) for s in ("val", "test", "person") if s in m}}
            for name, m in results.items()
        },
        **_search_summary(results),
        "majority_baseline_accuracy": {s: round(float(np.mean(d.labels == majority)), 4) for s, d in scored.items()},
        "pictures": ["comparison.png", *[p for m in results.values() for p in m["pictures"]]],
        "translation_judge": judge,
        "gallery": "gallery/gallery.html" if (ctx.out_dir / "gallery" / "gallery.html").exists() else None,
    }


def _search_summary(results: dict[str, dict]) -> dict:
    """The AutoKeras search per training set for the manifest: what was kept and every trial."""
    from .automl import trial_table

    searches = {}
    for name, metrics in results.items():
        search = metrics["training"].get("search")
        if search:
            searches[name] = {**{k: v for k, v in search.items() if k not in ("trials", "final_history")},
                              "trials": trial_table(search["trials"])}
    return {"automl_search": searches} if searches else {}


def _search_markdown(metrics: dict) -> str:
    from .automl import trial_markdown

    search = metrics["training"].get("search")
    if not search:
        return ""
    kept = (f"kept: the final run (epoch {search.get('final_best_epoch')}, val {search.get('final_val_acc')})"
            if search.get("kept") == "final" else f"kept: trial {search.get('best_trial')}'s model")
    return (f"\n\n## AutoKeras search ({search['space']}): {len(search['trials'])} trials, {kept}\n\n"
            + trial_markdown(search["trials"]))


def _translation_judge(ctx: StageContext, options: ClassifyOptions, classes, dropped: list[str]) -> dict | None:
    """What a classifier trained on real FER reads in augment's translations, per translated split
    (see augment.core.judge_translations), and a copy of augment's gallery showing it.

    The judge is `options.judge` or this run's 'real' model; None without one or without augment.
    """
    import numpy as np

    from fertransfer.augment.build import read_sources
    from fertransfer.augment.core import judge_translations
    from fertransfer.augment.io import read_labels_csv
    from fertransfer.augment.transforms import conform
    from fertransfer.data.images import read_images

    from .models import load_classifier, predict_labels

    labels_csv = ctx.artifacts.get("augment.translations")
    if labels_csv is None or dropped:
        return None
    augment_dir = labels_csv.parent  # labels.csv names its images relative to itself
    model = ctx.path(options.judge) if options.judge else ctx.out_dir / "real" / "model"
    if not labels_csv.is_file() or not (options.judge or model.is_dir()):
        return None
    classifier = load_classifier(model, device=ctx.run.device)
    if list(classifier.classes) != list(classes.names):
        raise StageError(f"{model}: the judge's classes {list(classifier.classes)} differ from [data].classes "
                         f"{list(classes.names)}")
    rows = read_labels_csv(labels_csv)
    size, channels = classifier.size, classifier.channels
    result: dict = {"judge": str(model), "splits": {}}
    for split in dict.fromkeys(r["split"] for r in rows):
        chosen = [r for r in rows if r["split"] == split]
        translated, ok, errors = read_images([str(augment_dir / r["file"]) for r in chosen], channels=channels)
        if errors:
            raise StageError(f"{augment_dir}: {len(errors)} translated image(s) unreadable, e.g. {errors[0]}")
        # Each source at the size the generator saw it, then both through the same resize to the
        # judge's input: the figures measure what the translation changed, not the resolution.
        sources = read_sources([r["source_file"] for r in chosen], channels, ctx.data.fer and str(ctx.path(ctx.data.fer)),
                               ctx.run.seed)
        sources = conform(conform(sources, translated.shape[1], channels), size, channels)
        translated = conform(translated, size, channels)
        labels = np.array([classes.index(r["label"]) for r in chosen], np.int64)
        figures = judge_translations(lambda x: predict_labels(classifier, x)[0], translated, sources, labels, classes.names)
        result["splits"][split] = figures
        ctx.log.info("judge on %d translated %s images: label preserved %.3f, judge agreement %.3f, judge accuracy "
                     "on the sources %.3f", len(labels), split, figures["label_preservation"]["overall"],
                     figures["judge_agreement"]["overall"], figures["source_accuracy"]["overall"])
    # augment's gallery, again, with what was measured here (augment ran before the judge existed)
    try:
        _judged_gallery(ctx, labels_csv, classes, result)
    except StageError as error:
        ctx.log.warning("gallery with the judge's figures not written: %s", error)
    return result


def _judged_gallery(ctx: StageContext, labels_csv: Path, classes, judge: dict, examples: int = 8) -> None:
    """classify/gallery/: the translation gallery of augment's translations with the judge's figures."""
    import os

    from fertransfer.augment.build import Translations, load_faces, rebuild_gallery
    from fertransfer.augment.generators import load_generator

    generator = ctx.artifacts.get("cyclegan.generator")
    backward = load_generator(generator, "AtoB", ctx.run.device, "auto") if generator and generator.is_file() else None
    faces_dir, faces = ctx.artifacts.get("extract.faces"), None
    if backward is not None and faces_dir is not None and faces_dir.is_dir():
        faces = load_faces(faces_dir, examples, backward.spec.image_size, backward.spec.in_channels, ctx.run.seed)
    sets = ctx.artifacts.get("augment.sets")
    set_counts = None
    if sets is not None and sets.is_dir():
        set_counts = {s.name: {c.name: len(os.listdir(c)) for c in sorted(s.iterdir()) if c.is_dir()}
                      for s in sorted(sets.iterdir()) if s.is_dir()}
    fer = ctx.data.fer and str(ctx.path(ctx.data.fer))
    translations = Translations(labels_csv, tuple(classes.names), fer, ctx.run.seed,
                                backward.spec.out_channels if backward else 1, set_counts=set_counts,
                                checkpoint=str(generator) if generator else "?")
    rebuild_gallery(translations, ctx.out_dir / "gallery", ctx.run_dir, examples, backward, faces, judge)


STAGE = Stage(
    name="classify",
    options=ClassifyOptions,
    run=run,
    description="Train expression classifiers (CNN or AutoKeras) per training set; evaluate on the real val/test "
                "and, with person_test, on the person's faces",
    consumes=_consumes,
    produces={"models": ".", "metrics": "metrics.json"},
    inputs=_inputs,
    data_keys=("fer", "labels", "ferplus", "classes"),
    check=_check,
    resumable=True,
    demo={"train_sets": ["real", "synthetic", "real+synthetic", "balanced", "classic"],
          "engine": "cnn", "epochs": 5, "width": 16, "batch_size": 32, "lr": 0.05,
          "patience": 0, "tta": "flip"},
)
