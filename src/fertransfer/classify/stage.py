"""The classify stage: train one engine per training set, evaluate honestly, compare.

Output folder (``<run dir>/classify/``)::

    metrics.json        every training set's metrics, keyed by set name
    report.md           one section per training set, then the comparison
    comparison.{md,csv,png}  accuracy, macro-F1 and recall per class, one row/bar group per set
    confusion_<set>.png, curves_<set>.png   confusion matrix (counts, row-normalised); loss/accuracy/lr per epoch
    <set>/model/        the trained model (model.json + weights); `pipeline predict --model` takes it
    <set>/metrics.json  val and test metrics, training details, per-epoch history

Selection (best epoch, early stopping, AutoKeras trials) only looks at the validation split;
the test split is scored once per trained model, at the end.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

from fertransfer.pipelines.options import option
from fertransfer.pipelines.stage import Stage, StageContext, StageError

ENGINES = ("cnn", "autokeras")


@dataclass
class ClassifyOptions:
    fer: str = option("data/fer2013", "The real labelled dataset (Kaggle CSV or folders); its val/test splits are "
                      "used for every evaluation (FER2013: val = PublicTest, test = PrivateTest).", kind="path")
    classes: list[str] = option([], "Class names in label order (empty: FER2013's seven).")
    train_sets: list[str] = option(["real"], "Training sets, each trained and compared: 'real' is the train split "
                                   "of `fer`; any other name is one of augment's sets (real+synthetic, balanced, synthetic, "
                                   "classic), read from <augment>/sets/.")
    engine: str = option("cnn", "Classifier: the fixed CNN (PyTorch) or an AutoKeras search.", choices=ENGINES)
    channels: int = option(1, "Input channels of the classifier (images are converted).", choices=(1, 3))
    size: int = option(48, "Input size of the classifier in pixels (images are resized).")
    epochs: int = option(30, "cnn: epochs (the schedule's length); autokeras: epochs per trial.")
    time_budget_minutes: float = option(0.0, "Wall-clock limit per training set (0 = none); training ends and "
                                        "keeps the best-on-validation weights.")
    batch_size: int = option(64, "Images per training step.")
    width: int = option(48, "cnn: channels of the first of four blocks (doubled per block).")
    lr: float = option(0.05, "cnn: peak learning rate (after warm-up, then cosine decay).")
    optimizer: str = option("sgd", "cnn: SGD with Nesterov momentum, or AdamW.", choices=("sgd", "adamw"))
    weight_decay: float = option(5e-4, "cnn: weight decay.")
    label_smoothing: float = option(0.1, "cnn: label smoothing of the cross-entropy loss.")
    patience: int = option(8, "cnn: stop after this many epochs without a better validation accuracy (0: never).")
    tta: str = option("tencrop", "cnn: test-time averaging for the final val/test scores.",
                      choices=("center", "flip", "tencrop"))
    bf16: str = option("auto", "cnn: bf16 autocast: auto (GPU, or CPU with AMX), on, off.", choices=("auto", "on", "off"))
    max_trials: int = option(3, "autokeras: models tried.")
    automl_block: str = option("vanilla", "autokeras: the searched block, always trained from scratch.",
                               choices=("vanilla", "resnet", "xception"))
    train_limit: int = option(0, "Use at most this many training images per set, stratified (0: all); for quick runs.")
    oversample: bool = option(False, "Repeat minority-class training images up to the majority count.")
    leave_out: list[str] = option([], "Classes left out of training and evaluation, e.g. [\"disgust\"].")
    two_tier: bool = option(False, "Two-tier classifier: positive / negative / neutral first, then the fine class.")


def _upstream(options: ClassifyOptions) -> list[str]:
    return ["augment"] if any(name != "real" for name in options.train_sets) else []


def _inputs(options: ClassifyOptions) -> list[str]:
    return [options.fer]


def _settings(options: ClassifyOptions, ctx: StageContext):
    from .automl import AutoKerasConfig
    from .cnn import CnnConfig
    from .experiments import EngineSettings

    cnn = CnnConfig(width=options.width, epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                    optimizer=options.optimizer, weight_decay=options.weight_decay,
                    label_smoothing=options.label_smoothing, patience=options.patience,
                    time_budget_minutes=options.time_budget_minutes, tta=options.tta, bf16=options.bf16,
                    crop=max(8, options.size - options.size // 12))
    automl = AutoKerasConfig(max_trials=options.max_trials, epochs=options.epochs,
                             time_budget_minutes=options.time_budget_minutes, block=options.automl_block,
                             batch_size=options.batch_size)
    return EngineSettings(options.engine, cnn, automl, seed=ctx.run.seed, device=ctx.run.device)


def _load_sets(ctx: StageContext, options: ClassifyOptions, classes):
    """The real dataset (for val/test and the 'real' set) and every requested training set."""
    from fertransfer.augment import set_folder
    from fertransfer.data import load_dataset

    if not options.train_sets:
        raise StageError("[classify].train_sets is empty; name at least one set (e.g. [\"real\"])")
    if len(set(options.train_sets)) != len(options.train_sets):
        raise StageError(f"[classify].train_sets names a set twice: {options.train_sets}")
    real = load_dataset(ctx.path(options.fer), classes=classes, channels=options.channels, size=options.size,
                        seed=ctx.run.seed)
    if "val" not in real.splits:
        raise StageError(f"{options.fer}: no validation split (model selection needs one)")
    train_sets = {}
    for name in options.train_sets:
        if name == "real":
            train_sets[name] = real["train"]
            continue
        folder = ctx.upstream("augment") / "sets" / set_folder(name)
        if not folder.is_dir():
            available = sorted(p.name for p in (ctx.upstream("augment") / "sets").glob("*") if p.is_dir())
            raise StageError(f"{folder}: no training set '{name}' from augment (available: {', '.join(available) or 'none'})")
        train_sets[name] = load_dataset(folder, classes=classes, channels=options.channels, size=options.size,
                                        val_fraction=0, test_fraction=0)["train"]
    return real, train_sets


def run(ctx: StageContext) -> dict:
    import numpy as np

    from fertransfer.augment import set_folder
    from fertransfer.data import class_set

    from . import experiments as ex
    from .evaluate import plot_confusion, plot_history, report_markdown, score
    from .models import predict_labels, save_classifier

    options: ClassifyOptions = ctx.options
    classes_set = class_set(options.classes)
    unknown = [c for c in options.leave_out if classes_set.index(c) is None]
    if unknown:
        raise StageError(f"[classify].leave_out: unknown class(es) {unknown}; classes: {list(classes_set.names)}")
    real, train_sets = _load_sets(ctx, options, classes_set)
    settings = _settings(options, ctx)
    classes = list(classes_set.names)
    dropped = [classes_set.names[classes_set.index(c)] for c in options.leave_out]
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
                    torch.save(state, path.with_suffix(".tmp"))
                    path.with_suffix(".tmp").replace(path)

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
        final = "test" if "test" in metrics else "val"
        plot_confusion(metrics[final]["confusion_matrix"], kept, ctx.out_dir / f"confusion_{slug}.png",
                       f"{name}: {final} accuracy {metrics[final]['accuracy']:.3f}, macro-F1 {metrics[final]['macro_f1']:.3f}")
        if trained.history:
            plot_history(trained.history, ctx.out_dir / f"curves_{slug}.png", f"{name} ({metrics['engine']})",
                         trained.info.get("best_epoch"))
        metrics["pictures"] = [p for p in (f"confusion_{slug}.png", f"curves_{slug}.png") if (ctx.out_dir / p).exists()]
        metrics["history"] = trained.history
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        ctx.timings[f"train_{name}"] = float(trained.info.get("seconds", 0))
        ctx.log.info("%s: %s accuracy %.4f, macro-F1 %.4f", name, final, metrics[final]["accuracy"],
                     metrics[final]["macro_f1"])
        results[name] = metrics

    preservation = _label_preservation(ctx, options, classes_set, dropped)

    final = "test" if "test" in evaluation else "val"
    rows = ex.comparison_rows(results, final)
    table = ex.comparison_markdown(rows, final)
    (ctx.out_dir / "comparison.md").write_text(table)
    with open(ctx.out_dir / "comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ex.plot_comparison(rows, ctx.out_dir / "comparison.png", final)
    (ctx.out_dir / "metrics.json").write_text(json.dumps({k: {s: v for s, v in m.items() if s != "history"}
                                                          for k, m in results.items()}, indent=2, default=float))
    parts = [report_markdown(name, metrics) for name, metrics in results.items()]
    (ctx.out_dir / "report.md").write_text("\n\n".join([*parts, "# comparison\n\n" + table + "\n![comparison](comparison.png)\n"]))

    return {
        "engine": options.engine,
        "classes": kept,
        "evaluated_on": {s: len(d) for s, d in evaluation.items()},
        "train_sets": {
            name: {"train_images": m["training"]["train_images"], "best_epoch": m["training"].get("best_epoch"),
                   "stopped": m["training"].get("stopped"), "seconds": round(float(m["training"].get("seconds", 0)), 1),
                   **{f"{s}_accuracy": round(m[s]["accuracy"], 4) for s in ("val", "test") if s in m},
                   **{f"{s}_macro_f1": round(m[s]["macro_f1"], 4) for s in ("val", "test") if s in m}}
            for name, m in results.items()
        },
        "majority_baseline_accuracy": {s: round(float(np.mean(d.labels == majority)), 4) for s, d in evaluation.items()},
        "pictures": ["comparison.png", *[p for m in results.values() for p in m["pictures"]]],
        "label_preservation": preservation,
    }


def _label_preservation(ctx: StageContext, options: ClassifyOptions, classes, dropped: list[str]) -> dict | None:
    """How often the classifier trained on real FER gives translated images their source label.

    Needs the 'real' set's model and augment's translated train split; None when either is absent.
    """
    from fertransfer.augment.core import label_agreement
    from fertransfer.data import load_dataset

    from .models import load_classifier, predict_labels

    if "augment" not in ctx.upstream_dirs:
        return None
    translated = ctx.upstream_dirs["augment"] / "translated"
    model = ctx.out_dir / "real" / "model"
    if dropped or not model.is_dir() or not (translated / "train").is_dir():
        return None
    images = load_dataset(translated, classes=classes, channels=options.channels, size=options.size,
                          val_fraction=0, test_fraction=0)["train"]
    classifier = load_classifier(model, device=ctx.run.device)
    result = label_agreement(lambda x: predict_labels(classifier, x)[0], images.images, images.labels, classes.names)
    ctx.log.info("label preservation of translated train images: %.3f", result["overall"])
    return result


STAGE = Stage(
    name="classify",
    options=ClassifyOptions,
    run=run,
    description="Train expression classifiers (CNN or AutoKeras) per training set; evaluate on the real val/test",
    upstream=_upstream,
    inputs=_inputs,
    resumable=True,
    demo={"fer": "data/smileys", "train_sets": ["real", "synthetic", "real+synthetic", "balanced", "classic"],
          "engine": "cnn", "epochs": 5, "width": 16, "batch_size": 32, "lr": 0.05,
          "patience": 0, "tta": "flip"},
)
