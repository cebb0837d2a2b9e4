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
from dataclasses import dataclass
from pathlib import Path

from fertransfer.errors import StageError
from fertransfer.pipelines.options import DataOptions
from fertransfer.pipelines.stage import Consumes, Stage, StageContext

from . import protocol
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
    # The person model's predictions over extract's footage, or self-training on it.
    footage = options.footage == EXTRACT or options.pseudo_share > 0
    if options.judge or any(name != "real" for name in options.train_sets):
        needs += [Consumes("augment.translations"), Consumes("cyclegan.generator", optional=True),
                  Consumes("cyclegan.person_scorer", optional=True)]
    if footage or options.judge or any(name != "real" for name in options.train_sets):
        needs.append(Consumes("extract.faces", "" if footage else data.faces, optional=not footage))
    if footage:
        needs.append(Consumes("extract.faces_table"))
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
    trained = {set_folder(name) for name in options.train_sets}
    if options.train_sets and options.person_model and set_folder(options.person_model) not in trained:
        problems.append(f"person_model: '{options.person_model}' is not one of train_sets {options.train_sets}")
    if options.footage not in ("", EXTRACT):
        problems.append(f"footage: \"{EXTRACT}\" or empty, got \"{options.footage}\"")
    if options.engine == "autokeras":
        problems += _check_autokeras(options)
    if options.pseudo_share > 0 and (not options.init or options.engine != "cnn" or options.two_tier):
        problems.append("pseudo_share: self-training fine-tunes the cnn engine from `init` (the model that labels "
                        "the footage); set `init` and engine = \"cnn\" without two_tier, or pseudo_share = 0")
    if options.engine != "cnn" and (options.steps or options.eval_every):
        problems.append(f"steps, eval_every: options of the cnn engine (engine = \"{options.engine}\" has epochs "
                        "and time_budget_minutes)")
    problems += protocol.seed_problems(options.seeds)
    left_out = {classes.names[i] for i in map(classes.index, options.leave_out) if i is not None}
    problems += protocol.init_problems(options.init, config_dir, options.engine, options.two_tier,
                                       [c for c in classes.names if c not in left_out], options.size, options.channels)
    problems += _pseudo_model_problems(options, config_dir, [c for c in classes.names if c not in left_out])
    return problems


def _pseudo_model_problems(options: ClassifyOptions, config_dir: Path, classes: list[str]) -> list[str]:
    """A labeller for self-training must be read only when it is on, and know this run's classes."""
    if not options.pseudo_model:
        return []
    if options.pseudo_share <= 0:
        return ["pseudo_model: read only by self-training; set pseudo_share > 0 or remove it"]
    try:
        found = protocol.configured_model(options.pseudo_model, config_dir)
    except (StageError, ValueError) as error:
        return [f"pseudo_model: {error}"]
    if found is None:
        return []
    folder, meta = found
    if list(meta.get("classes", [])) != classes:
        return [f"pseudo_model: {folder}: the model's classes [{', '.join(meta.get('classes', []))}] are not this "
                f"run's [{', '.join(classes)}]"]
    return []


def _check_autokeras(options: ClassifyOptions) -> list[str]:
    """The search's own settings, and a time budget that holds at least one trial."""
    from .automl import SECONDS_PER_TRIAL_IMAGE, SPACES, smallest_budget_minutes
    from .automl_hparams import fixed_problems

    if options.automl_space not in SPACES:  # the config's choices catch it first; this guards the API
        return [f"automl_space: unknown search space {options.automl_space!r}; known: {', '.join(SPACES)}"]
    problems = fixed_problems(options.automl_fixed)
    if options.automl_fixed and options.automl_space != "fer_cnn":
        problems.append(f"automl_fixed: holds hyperparameters of the fer_cnn space, not of {options.automl_space!r}; "
                        f"remove it or set automl_space = \"fer_cnn\"")
    if options.time_budget_minutes <= 0:
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
    return ([options.person_test] if options.person_test not in ("", EXTRACT) else []) + (
        [options.init] if options.init not in ("", protocol.INIT_REAL) else []) + (
        [options.pseudo_model] if options.pseudo_model else [])


def _settings(options: ClassifyOptions, ctx: StageContext):
    from fertransfer.expression.config import CnnConfig

    from .automl import AutoKerasConfig
    from .experiments import EngineSettings
    from .options import CNN_OPTIONS

    cnn = CnnConfig(**{name: getattr(options, name) for name in CNN_OPTIONS}, crop=max(8, options.size - options.size // 12),
                    max_steps=options.steps)
    automl = AutoKerasConfig(max_trials=options.max_trials, epochs=options.epochs,
                             time_budget_minutes=options.time_budget_minutes, block=options.automl_block,
                             batch_size=options.batch_size, space=options.automl_space,
                             trial_images=options.automl_trial_images, search_share=options.automl_search_share,
                             final_epochs=options.automl_final_epochs, final_min_epochs=options.automl_final_min_epochs,
                             fixed=dict(options.automl_fixed), bf16=options.bf16,
                             final_optimizer=options.automl_final_optimizer, final_lr=options.lr,
                             final_weight_decay=options.weight_decay, final_ema=options.ema, tta=options.tta)
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

    Checked before any training: a missing or empty set stops the stage. A set with a subset of
    the classes is scored on those; a class folder outside the class set is left out with a
    warning (`person_test_strict` refuses both).
    """
    from fertransfer.data import DatasetError

    from . import experiments as ex
    from .testsets import load_test_set

    if not options.person_test:
        return None, None
    path = ctx.artifact("extract.person_test")
    if options.person_test == EXTRACT and not path.is_dir():
        raise StageError(f"[classify].person_test = \"extract\": {path} does not exist (this extract output has "
                         "no held-out person set)")
    kept = [c for c in classes.names if c not in dropped]
    where = f"[classify].person_test: {path}"
    try:
        test = load_test_set(path, classes, options.channels, options.size, strict=options.person_test_strict,
                             ignore=dropped, where=where)
    except DatasetError as error:
        message = str(error)
        raise StageError(message if message.startswith(where) else f"[classify].person_test: {message}") from None
    person = test.data
    if dropped:
        person = ex.leave_out(person, list(classes.names), dropped)[0]
    if len(person) == 0:
        raise StageError(f"{where}: no images of the classes [{', '.join(kept)}]")
    ctx.log.info("person_test: %d images of the person (%s of %s)", len(person), test.part, path)
    note = test.describe()
    return person, f"{path}, {test.part}, {len(person)} images" + (f" ({note})" if note else "")


@dataclass
class _Scoring:
    """What every trained model is scored on, and how its folder is written (shared by all sets and seeds)."""

    evaluation: dict  # split -> ImageSet (val, test)
    person: object  # ImageSet or None
    person_source: str | None
    kept: list[str]  # the classes of the models
    majority: int  # the majority training class (the baseline)
    real: object  # the loaded `fer` dataset (its labels and dropped counts go in the model card)


def _train_one(ctx: StageContext, options: ClassifyOptions, name: str, train, settings, folder: Path,
               scoring: _Scoring, init=None, pictures: str = "", before: int | None = None,
               pseudo=None) -> tuple[dict, object]:
    """Train one model (one set, one seed) into `folder`, score it and write its metrics; with
    `pictures` (the set's file-name slug) also its confusion matrices and curves. Returns
    (metrics, classifier); the classifier is None when an interrupted run already finished it."""
    from datetime import datetime, timezone

    from fertransfer.atomic import atomic_write
    from fertransfer.expression.models import save_classifier, write_model_card
    from fertransfer.pipelines.runner import machine_description

    from . import experiments as ex
    from .evaluate import plot_confusion, plot_history

    kept_metrics = _kept_from_interrupted_run(ctx, folder / "metrics.json") if ctx.resuming else None
    if kept_metrics is not None:
        ctx.log.info("%s: already trained in the interrupted run, kept", name)
        return kept_metrics, None
    folder.mkdir(parents=True, exist_ok=True)
    kept = scoring.kept
    ctx.log.info("%s: training %s%s on %d images (%s)", name, options.engine, " from the initial model" if init else "",
                 len(train), ", ".join(f"{c} {n}" for c, n in zip(kept, train.counts(len(kept)).tolist())))
    if options.two_tier:
        trained = ex.train_two_tier(settings, train, scoring.evaluation["val"], kept, folder)
    else:
        checkpoint_file = folder / "checkpoint.pt"
        checkpoint = resume = None
        if options.engine == "cnn":
            import torch

            def checkpoint(state, path=checkpoint_file):
                atomic_write(path, lambda handle: torch.save(state, handle))

            if ctx.resuming and checkpoint_file.is_file():
                resume = _kept_checkpoint(ctx, checkpoint_file)
        trained = ex.train_flat(settings, train, scoring.evaluation["val"], kept, folder, checkpoint, resume, init,
                                pseudo)
        checkpoint_file.unlink(missing_ok=True)
        if init is not None and options.finetune_batchnorm == "real":
            trained.info["batchnorm"] = _reestimate_on_real(trained, scoring, settings.seed)
    save_classifier(trained.classifier, folder / "model")

    metrics = {"engine": "two_tier/" + options.engine if options.two_tier else options.engine,
               "train_set": name, "classes": kept, "seed": settings.seed,
               "training": {"train_images": len(train), "train_images_before_oversampling": before or len(train),
                            "train_counts": dict(zip(kept, train.counts(len(kept)).tolist())), **trained.info}}
    metrics.update(_score_model(trained.classifier, scoring, folder))
    fer = ctx.data.fer
    data_source = str(ctx.path(fer)) if name.startswith("real") else f"augment set '{name}' (val/test: {fer})"
    write_model_card(folder / "model", {
        "name": name, "data": data_source, "labels": scoring.real.labels, "dropped": scoring.real.dropped,
        "classes": kept, "engine": metrics["engine"], "train_counts": metrics["training"]["train_counts"],
        "seconds": trained.info.get("seconds", 0), "machine": machine_description(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "metrics": {s: {"images": len(d), "accuracy": metrics[s]["accuracy"], "macro_f1": metrics[s]["macro_f1"]}
                    for s, d in scoring.evaluation.items()}})
    final = "test" if "test" in metrics else "val"
    drawn = []
    if pictures:
        drawn.append(f"confusion_{pictures}.png")
        plot_confusion(metrics[final]["confusion_matrix"], kept, ctx.out_dir / drawn[-1],
                       f"{name}: {final} accuracy {metrics[final]['accuracy']:.3f}, macro-F1 {metrics[final]['macro_f1']:.3f}")
        if scoring.person is not None:
            drawn.append(f"confusion_{pictures}_person.png")
            plot_confusion(metrics["person"]["confusion_matrix"], kept, ctx.out_dir / drawn[-1],
                           f"{name}: person accuracy {metrics['person']['accuracy']:.3f}, "
                           f"macro-F1 {metrics['person']['macro_f1']:.3f} ({len(scoring.person)} images)",
                           rows=metrics["person"]["confusion_rows"])
        if trained.history:
            drawn.append(f"curves_{pictures}.png")
            plot_history(trained.history, ctx.out_dir / drawn[-1], f"{name} ({metrics['engine']})",
                         trained.info.get("best_epoch"))
        search = trained.info.get("search")
        if search and search.get("trials"):
            from .automl import plot_search

            drawn.append(f"search_{pictures}.png")
            plot_search(search["trials"], ctx.out_dir / drawn[-1],
                        f"{name}: AutoKeras {search['space']} search, {len(search['trials'])} trials")
    metrics["pictures"] = drawn
    metrics["history"] = trained.history
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    ctx.log.info("%s: %s accuracy %.4f, macro-F1 %.4f%s", name, final, metrics[final]["accuracy"],
                 metrics[final]["macro_f1"], f"; person accuracy {metrics['person']['accuracy']:.4f}, macro-F1 "
                 f"{metrics['person']['macro_f1']:.4f}" if "person" in metrics else "")
    return metrics, trained.classifier


PERSON_PREDICTIONS = "person_predictions.npz"  # per model: the person's frames' predicted labels and probabilities


def _score_model(classifier, scoring: _Scoring, folder: Path) -> dict:
    """val/test (and person) metrics of a trained model, scored once; the person's predictions are
    kept beside it for the per-clip figures."""
    import numpy as np

    from fertransfer.expression.models import predict_labels

    from .evaluate import score

    metrics = {}
    for split, data in scoring.evaluation.items():
        labels, _ = predict_labels(classifier, data.images)
        metrics[split] = score(data.labels, labels, scoring.kept, scoring.majority)
    if scoring.person is not None:
        labels, probs = predict_labels(classifier, scoring.person.images)
        metrics["person"] = score(scoring.person.labels, labels, scoring.kept, scoring.majority)
        metrics["person"]["source"] = scoring.person_source
        np.savez(folder / PERSON_PREDICTIONS, labels=labels, probs=probs.astype(np.float32))
    return metrics


def _kept_from_interrupted_run(ctx: StageContext, path: Path) -> dict | None:
    """A training set's metrics.json left by an interrupted run; None (that set is trained again,
    with a warning naming the file) when it is missing, truncated or not a finished set's."""
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or "training" not in metrics:
            raise ValueError("not a training set's metrics")
        if not (path.parent / "model" / "model.json").is_file():
            raise ValueError("its model/ is missing")
        return metrics
    except (OSError, ValueError) as error:
        ctx.log.warning("%s: unreadable (%s); training that set again", path, error)
        return None


def _kept_checkpoint(ctx: StageContext, path: Path) -> dict | None:
    """The training checkpoint an interrupted run left; None (training starts over, with a warning
    naming the file) when it cannot be read."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many kinds for a truncated or altered file
        ctx.log.warning("%s: unreadable (%s: %s); training that set from the start", path, type(error).__name__,
                        str(error).splitlines()[0] if str(error) else "")
        return None


def _initial_model(ctx: StageContext, options: ClassifyOptions, real_train, settings, scoring: _Scoring):
    """The model every set is fine-tuned from and its scores, or (None, None) from scratch.

    init = "real": trained here on `fer`'s train split (classify/init/, [run] seed); a path: loaded,
    after checking its classes and input against this run's.
    """
    import dataclasses

    from fertransfer.expression.models import load_classifier

    if not options.init:
        return None, None
    folder = ctx.out_dir / "init"
    if options.init == protocol.INIT_REAL:
        metrics, classifier = _train_one(ctx, options, "real (initial model)", real_train,
                                         dataclasses.replace(settings, seed=ctx.run.seed), folder, scoring,
                                         pictures="init")
        if classifier is None:
            classifier = load_classifier(folder / "model", device=ctx.run.device)
        metrics["model"] = str(folder / "model")
        return classifier, metrics
    path = ctx.path(options.init)
    try:
        model_folder, meta = protocol.model_meta(path)
    except ValueError as error:
        raise StageError(f"[classify].init: {error}") from None
    mismatch = protocol.init_mismatch(f"[classify].init: {model_folder}", meta, scoring.kept, options.size,
                                      options.channels)
    if mismatch:
        raise StageError(mismatch)
    classifier = load_classifier(model_folder, device=ctx.run.device)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"model": str(model_folder), **_score_model(classifier, scoring, folder)}
    ctx.log.info("initial model %s: %s", model_folder, ", ".join(f"{s} accuracy {m['accuracy']:.4f}"
                                                                for s, m in metrics.items() if isinstance(m, dict)))
    return classifier, metrics


BATCHNORM_IMAGES = 6400  # real FER train images whose crops give the re-estimated statistics (14 batches)


def _reestimate_on_real(trained, scoring: _Scoring, seed: int) -> str:
    """The fine-tuned model's BatchNorm statistics re-estimated on real FER train images (replaced in
    `trained`); returns what was done, for the metrics."""
    import numpy as np

    from fertransfer.expression.cnn import reestimate_batchnorm

    images = scoring.real["train"].images
    chosen = np.random.default_rng(seed).choice(len(images), min(BATCHNORM_IMAGES, len(images)), replace=False)
    trained.classifier = reestimate_batchnorm(trained.classifier, images[chosen], seed)
    return f"re-estimated on {len(chosen)} real FER train images"


def _finetune_settings(options: ClassifyOptions, settings, init):
    """The fine-tuning recipe: the initial model's architecture, `finetune_steps` at `finetune_lr`,
    BatchNorm's statistics held when asked (re-estimating them comes after, in _train_one), and
    self-training's share of each batch."""
    import dataclasses

    cnn = dataclasses.replace(settings.cnn, width=init.config.width, dropout=init.config.dropout,
                              crop=init.config.crop, max_steps=options.finetune_steps, lr=options.finetune_lr,
                              freeze_batchnorm=options.finetune_batchnorm == "frozen", pseudo_share=options.pseudo_share)
    return dataclasses.replace(settings, cnn=cnn)


def _prepare(train, name: str, options: ClassifyOptions, classes: list[str], dropped: list[str], seed: int):
    """A training set as trained: classes left out, limited, oversampled (the same for every seed)."""
    from . import experiments as ex

    if dropped:
        train = ex.leave_out(train, classes, dropped)[0]
    train = ex.limit(train, options.train_limit, seed)
    kept = [c for c in classes if c not in dropped]
    before = len(train)
    if options.oversample:
        train = ex.oversample(train, len(kept), seed)
    if len(train) == 0:
        raise StageError(f"training set '{name}' has no images of the classes {kept}")
    return train, before


def _mean_metrics(runs: list[dict]) -> dict:
    """The first seed's metrics with accuracy, macro-F1 and recall per class averaged over seeds."""
    import copy

    import numpy as np

    out = copy.deepcopy(runs[0])
    for split in ("val", "test", "person"):
        if split not in out:
            continue
        for key in ("accuracy", "macro_f1"):
            out[split][key] = float(np.mean([m[split][key] for m in runs]))
        for c, row in out[split]["per_class"].items():
            row["recall"] = float(np.mean([m[split]["per_class"][c]["recall"] for m in runs]))
    return out


def run(ctx: StageContext) -> dict:
    import dataclasses

    import numpy as np

    from fertransfer.augment import set_folder

    from . import experiments as ex
    from .clips import find_clips, person_statistics
    from .evaluate import report_markdown

    options: ClassifyOptions = ctx.options
    problems = protocol.seed_problems(options.seeds)
    if problems:
        raise StageError(f"[classify].{problems[0]}")
    seeds = protocol.resolve_seeds(options.seeds, ctx.run.seed)
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
    scoring = _Scoring(evaluation, person, person_source, kept, majority, real)
    clips = find_clips(person.files, person.labels, len(kept)) if person is not None else None
    for warning in clips.warnings if clips else ():
        ctx.log.warning("person_test: %s", warning)

    prepared = {name: _prepare(train, name, options, classes, dropped, ctx.run.seed) for name, train in train_sets.items()}
    base_train = None
    if options.init == protocol.INIT_REAL:
        base_train = (prepared.get("real") or _prepare(real["train"], "real", options, classes, dropped, ctx.run.seed))[0]
    init, init_metrics = _initial_model(ctx, options, base_train, settings, scoring)
    pseudo = None
    if init is not None:
        settings = _finetune_settings(options, settings, init)
        pseudo = _pseudo_labels(ctx, options, init)
    results: dict[str, list[dict]] = {name: [] for name in train_sets}
    for seed in seeds:  # seeds outside: after the first, every set has a complete result
        for name, (train, before) in prepared.items():
            slug = set_folder(name)  # real+synthetic -> real_synthetic, as augment names its folders
            first = seed == seeds[0]
            label = name if len(seeds) == 1 else f"{name} (seed {seed})"
            metrics, _ = _train_one(ctx, options, label, train, dataclasses.replace(settings, seed=seed),
                                    protocol.seed_folder(ctx.out_dir / slug, seed, seeds), scoring, init,
                                    pictures=slug if first else "", before=before, pseudo=pseudo)
            metrics["train_set"] = name
            ctx.timings[f"train_{name}" if first else f"train_{name}_seed_{seed}"] = float(
                metrics["training"].get("seconds", 0))
            results[name].append(metrics)

    judge = _translation_judge(ctx, options, classes_set, dropped)

    final = "test" if "test" in evaluation else "val"
    fer_stats = protocol.fer_statistics(results, final)
    person_stats = None
    if person is not None:
        probs, predicted = {}, {}
        for name in results:
            saved = [np.load(protocol.seed_folder(ctx.out_dir / set_folder(name), s, seeds) / PERSON_PREDICTIONS)
                     for s in seeds]
            probs[name], predicted[name] = [p["probs"] for p in saved], [p["labels"] for p in saved]
        person_stats = person_statistics(person.labels, probs, clips, protocol.REFERENCE, options.bootstrap,
                                         ctx.run.seed, predicted)
    means = {name: _mean_metrics(runs) for name, runs in results.items()}
    product = _person_model(ctx, options, means)
    rows = ex.comparison_rows(means, final)
    statistics = protocol.statistics_rows(fer_stats, person_stats, seeds)
    protocol_text = _protocol_text(options, init_metrics)
    table = ex.comparison_markdown(rows, final, person_source or "")
    if len(seeds) > 1:
        table = table.replace("Comparison on", f"Mean over {len(seeds)} seeds, on", 1)
    table += "\n" + protocol.statistics_markdown(fer_stats, person_stats, seeds, final, protocol_text,
                                                 clips.warnings if clips else [], options.bootstrap if person else 0)
    (ctx.out_dir / "comparison.md").write_text(table)
    merged = [{**row, **{k: v for k, v in stats.items() if k != "train_set"}} for row, stats in zip(rows, statistics)]
    with open(ctx.out_dir / "comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in merged for k in row)))
        writer.writeheader()
        writer.writerows(merged)
    ex.plot_comparison(rows, ctx.out_dir / "comparison.png", final)
    protocol.plot_statistics(fer_stats, person_stats, ctx.out_dir / "comparison_seeds.png", final)
    (ctx.out_dir / "metrics.json").write_text(json.dumps({
        name: {**{s: v for s, v in runs[0].items() if s != "history"},
               "over_seeds": {"seeds": seeds, final: fer_stats[name],
                              **({"person": person_stats[name]} if person_stats else {})}}
        for name, runs in results.items()} | ({"init": init_metrics} if init_metrics else {}),
        indent=2, default=float))
    parts = [report_markdown(name, runs[0]) + _search_markdown(runs[0]) for name, runs in results.items()]
    (ctx.out_dir / "report.md").write_text("\n\n".join([*parts, "# comparison\n\n" + table + "\n![comparison](comparison.png)\n"
                                                        "\n![over seeds](comparison_seeds.png)\n"]))

    scored = {**evaluation, **({"person": person} if person is not None else {})}
    return {
        "engine": options.engine,
        "classes": kept,
        "labels": real.labels,
        **({"ferplus_dropped": real.dropped} if real.dropped else {}),
        "evaluated_on": {s: len(d) for s, d in scored.items()},
        "protocol": {"init": options.init or "scratch", "description": protocol_text, "seeds": seeds,
                     **({"initial_model": _init_summary(init_metrics)} if init_metrics else {})},
        **({"person_clips": {"clips": clips.count, "warnings": clips.warnings}} if clips else {}),
        **({"pseudo_labels": pseudo.summary} if pseudo is not None else {}),
        "train_sets": {name: _set_summary(runs, fer_stats[name], person_stats and person_stats[name], final)
                       for name, runs in results.items()},
        **_search_summary({name: runs[0] for name, runs in results.items()}),
        "majority_baseline_accuracy": {s: round(float(np.mean(d.labels == majority)), 4) for s, d in scored.items()},
        "pictures": ["comparison.png", "comparison_seeds.png", *[p for runs in results.values() for p in runs[0]["pictures"]]],
        "translation_judge": judge,
        "person_model": product["person_model"],
        **({"footage": product["footage"]} if "footage" in product else {}),
        "gallery": "gallery/gallery.html" if (ctx.out_dir / "gallery" / "gallery.html").exists() else None,
    }


def _pseudo_labels(ctx: StageContext, options: ClassifyOptions, init):
    """Self-training's labelled faces (the initial model's surest readings of the footage), or None
    when it is off; every face's reading goes to pseudo_labels.csv."""
    from fertransfer.expression.models import load_classifier

    from . import pseudo

    if options.pseudo_share <= 0:
        return None
    labeller = init
    if options.pseudo_model:
        folder, _ = protocol.model_meta(ctx.path(options.pseudo_model))
        labeller = load_classifier(folder, device=ctx.run.device)
    result, rows = pseudo.label_footage(labeller, ctx.artifact("extract.faces_table"), ctx.artifact("extract.faces"),
                                        options.pseudo_keep)
    result.summary["labeller"] = str(folder) if options.pseudo_model else "the initial model"
    pseudo.write_rows(rows, ctx.out_dir / pseudo.PSEUDO_LABELS)
    summary = result.summary
    ctx.log.info("self-training: %d of %d footage faces kept as labels by %s (%s), %.0f%% of every fine-tuning batch",
                 summary["kept"], summary["footage_faces"], summary["labeller"],
                 ", ".join(f"{c} {n}" for c, n in summary["kept_per_class"].items() if n), 100 * options.pseudo_share)
    return result


def _protocol_text(options: ClassifyOptions, init_metrics: dict | None) -> str:
    """One line saying how every set was trained."""
    budget = f"{options.steps} steps" if options.steps else f"{options.epochs} epochs"
    if options.time_budget_minutes:
        budget += f" or {options.time_budget_minutes:g} min, whichever ends first"
    if not options.init:
        return f"scratch: every set from random weights, {budget} at peak lr {options.lr:g}"
    start = (f"a model trained here on real FER ({budget}, lr {options.lr:g})" if options.init == protocol.INIT_REAL
             else f"the model {init_metrics['model'] if init_metrics else options.init}")
    reader = f"the model {options.pseudo_model}" if options.pseudo_model else "the initial model"
    return (f"adapt: every set fine-tuned from {start} for {options.finetune_steps} steps at peak lr "
            f"{options.finetune_lr:g}" + {"frozen": ", BatchNorm's statistics held",
                                           "real": ", BatchNorm's statistics re-estimated on real FER after"}.get(
                options.finetune_batchnorm, "") + (f", {100 * options.pseudo_share:g}% of every batch the person's "
                                                   f"footage labelled by {reader} (self-training)"
                                                   if options.pseudo_share > 0 else ""))


def _init_summary(metrics: dict) -> dict:
    return {"model": metrics["model"],
            **{f"{s}_accuracy": round(m["accuracy"], 4) for s, m in metrics.items() if isinstance(m, dict) and "accuracy" in m}}


def _rounded(figures: dict | None) -> dict:
    """mean, std and interval of a figure, rounded, for the manifest."""
    if not figures:
        return {}
    out = {"mean": round(figures["mean"], 4), "std": None if figures["std"] is None else round(figures["std"], 4)}
    if figures.get("interval"):
        out["interval"] = [round(v, 4) for v in figures["interval"]]
    return out


def _set_summary(runs: list[dict], fer: dict, person: dict | None, final: str) -> dict:
    """A set's line in the manifest: figures averaged over seeds, their std, the person's per-clip
    figures and intervals, and the paired differences from 'real'."""
    import numpy as np

    first = runs[0]["training"]
    row = {"train_images": first["train_images"], "best_epoch": first.get("best_epoch"), "stopped": first.get("stopped"),
           "steps": first.get("steps"), "seconds": round(float(sum(m["training"].get("seconds", 0) for m in runs)), 1),
           "seeds": len(runs)}
    for split in ("val", "test", "person"):
        if split in runs[0]:
            row[f"{split}_accuracy"] = round(float(np.mean([m[split]["accuracy"] for m in runs])), 4)
            row[f"{split}_macro_f1"] = round(float(np.mean([m[split]["macro_f1"] for m in runs])), 4)
    row[f"{final}_accuracy_std"] = _rounded(fer["accuracy"])["std"]
    if "difference" in fer:
        row[f"{final}_accuracy_vs_real"] = _rounded(fer["difference"])
    if person:
        row["person_accuracy_std"] = _rounded(person["frames"])["std"]
        for level, figures in person.items():
            row[f"person_{level}"] = _rounded(figures)
            if figures.get("difference"):
                row[f"person_{level}_vs_real"] = _rounded(figures["difference"])
    return row


def _person_model(ctx: StageContext, options: ClassifyOptions, results: dict[str, dict]) -> dict:
    """The model to use for the person, copied to person_model/ with its card; with `footage`, its
    predictions over extract's footage faces (distribution and timelines, footage/)."""
    from fertransfer.augment import set_folder
    from fertransfer.expression.models import load_classifier

    from .footage import FOOTAGE_DIR, predict_footage
    from .product import person_model_set, publish_person_model

    name, why = person_model_set(options.person_model, list(results))
    name = next((n for n in results if set_folder(n) == set_folder(name)), None)  # as train_sets spells it
    if name is None:
        raise StageError(f"[classify].person_model: '{options.person_model}' is not one of train_sets {list(results)}")
    summary = {"person_model": publish_person_model(ctx.out_dir, name, set_folder(name), why, results)}
    ctx.log.info("person model: %s (%s), copied to classify/person_model", name, why)
    if options.footage == EXTRACT:
        classifier = load_classifier(ctx.out_dir / summary["person_model"]["path"], device=ctx.run.device)
        summary["footage"] = predict_footage(classifier, ctx.artifact("extract.faces_table"),
                                             ctx.artifact("extract.faces"), ctx.out_dir / FOOTAGE_DIR, name)
        ctx.log.info("footage: %d faces predicted by the person model", summary["footage"]["faces"])
    return summary


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
    (see expression.judge.judge_translations), and a copy of augment's gallery showing it.

    The judge is `options.judge` or this run's 'real' model; None without one or without augment.
    """
    import numpy as np

    from fertransfer.augment.build import read_sources
    from fertransfer.augment.io import read_labels_csv
    from fertransfer.data.images import read_images
    from fertransfer.expression.judge import judge_at_judge_size
    from fertransfer.expression.models import load_classifier, predict_labels

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
    person_scorer, person_info = _person_scorer(ctx.artifacts.get("cyclegan.person_scorer"))
    if person_info:
        result["person_score"] = person_info
    for split in dict.fromkeys(r["split"] for r in rows):
        chosen = [r for r in rows if r["split"] == split]
        translated, ok, errors = read_images([str(augment_dir / r["file"]) for r in chosen], channels=channels)
        if errors:
            raise StageError(f"{augment_dir}: {len(errors)} translated image(s) unreadable, e.g. {errors[0]}")
        sources = read_sources([r["source_file"] for r in chosen], channels, ctx.data.fer and str(ctx.path(ctx.data.fer)),
                               ctx.run.seed)
        labels = np.array([classes.index(r["label"]) for r in chosen], np.int64)
        figures = judge_at_judge_size(lambda x: predict_labels(classifier, x)[0], translated, sources, labels,
                                      classes.names, size, channels)
        if person_scorer is not None:  # beside the judge: did the translation reach the person?
            from fertransfer.cyclegan.person_score import person_score_by_class

            figures["person_score"] = person_score_by_class(person_scorer, translated, labels, classes.names)
            figures["person_score_on_sources"] = person_score_by_class(person_scorer, sources, labels,
                                                                      classes.names)["overall"]
            ctx.log.info("person score on the %d translated %s images: %.3f (untranslated sources %.3f)", len(labels),
                         split, figures["person_score"]["overall"], figures["person_score_on_sources"])
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


def _person_scorer(path: Path | None):
    """The person score's classifier that the cyclegan stage trained beside its generator, and what
    it says of itself (its controls, a warning, or why there is none); (None, None) without one."""
    if path is None or not path.is_file():
        return None, None
    import torch

    from fertransfer.cyclegan.person_score import PersonScorer

    state = torch.load(path, map_location="cpu", weights_only=True)
    if "not_computed" in state:
        return None, {"not_computed": state["not_computed"]}
    about = {k: v for k, v in (state.get("about") or {}).items() if v is not None}
    return PersonScorer.from_state_dict(state), {"classifier": str(path), **about}


STAGE = Stage(
    name="classify",
    options=ClassifyOptions,
    run=run,
    outputs=("metrics.json", "comparison.csv"),
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
          "patience": 0, "tta": "flip", "footage": "extract"},
)
