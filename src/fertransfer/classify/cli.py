"""`pipeline predict INPUT --model M`: classify the faces in an image, a folder or a video;
`pipeline evaluate DATASET --model M`: score a trained model on any labelled dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from fertransfer.errors import StageError
from fertransfer.paths import check_outputs_apart

if TYPE_CHECKING:
    from .models import Classifier
    from .predict import FaceDetector


def add_model_arguments(p: argparse.ArgumentParser, min_face_size: int) -> None:
    """The model and detector options `predict` and `serve` share (`serve` starts at larger faces)."""
    p.add_argument("--model", "-m", required=True,
                   help="a model folder (with model.json), a classify stage folder, or one training set's folder")
    p.add_argument("--classes", nargs="+", help="the class list the model must have (default: FER2013's seven)")
    p.add_argument("--min-score", type=float, default=0.9, help="lowest MTCNN face confidence kept")
    p.add_argument("--min-face-size", type=int, default=min_face_size,
                   help="smallest face MTCNN looks for, in pixels (smaller is slower)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def load_model_and_detector(args: argparse.Namespace) -> tuple[Classifier, FaceDetector]:
    """(classifier, detector) from add_model_arguments' options; a wrong model stops here with one line."""
    from .predict import FaceDetector, load_checked_classifier

    if args.min_face_size < 12:
        raise StageError(f"--min-face-size must be 12 or more (MTCNN's smallest window), got {args.min_face_size}")
    classifier = load_checked_classifier(args.model, args.classes, device=args.device)
    return classifier, FaceDetector(min_score=args.min_score, min_size=args.min_face_size, device=args.device)


def cmd_predict(args: argparse.Namespace) -> int:
    from .models import find_model
    from .predict import load_checked_classifier, predict, whole_image

    if args.every < 1:
        raise StageError(f"--every must be 1 or more, got {args.every}")
    source = Path(args.input)
    out_dir = Path(args.out)
    # A folder of images and the model are inputs the output may not overlap; beside a single file it may be.
    model = find_model(Path(args.model))  # a wrong --model is named before the output is checked
    check_outputs_apart([("--out", out_dir)], [("--model", model)] + ([("INPUT", source)] if source.is_dir() else []))
    check_outputs_apart([("--out", out_dir)], [("INPUT", source)], may_hold_inputs=True)
    if args.faces:
        classifier, detector = load_checked_classifier(args.model, args.classes, device=args.device), whole_image
    else:
        classifier, detector = load_model_and_detector(args)
    summary = predict(source, classifier, out_dir, detector=detector, every=args.every)
    print(json.dumps(summary, indent=2))
    print(f"predictions: {out_dir / summary['csv']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score one model on one labelled set; files only where --out says, the figures always printed."""
    from fertransfer.data import class_folder_names, class_set, load_labelled_set

    from .evaluate import class_mismatch, classes_differ, headline, plot_confusion, present_classes, score
    from .models import find_model, load_classifier, predict_labels

    model_path = find_model(Path(args.model))
    if args.out:
        check_outputs_apart([("--out", args.out)], [("DATASET", args.dataset), ("--model", model_path)])
    classifier = load_classifier(model_path, device=args.device)
    model_classes = list(classifier.classes)
    classes = class_set(model_classes)
    where = f"{args.dataset} (model {model_path})"
    found = class_folder_names(args.dataset)
    if found is None:  # a CSV: its integer labels are in the order of --classes (default FER2013's)
        found = list(class_set(args.classes).names)
        if found != model_classes:
            raise StageError(class_mismatch(where, found, model_classes))
    elif any(classes.index(name) is None for name in found):
        raise StageError(class_mismatch(where, found, model_classes))
    data, part = load_labelled_set(args.dataset, classes=classes, channels=classifier.channels,
                                   size=classifier.size, split=args.split)
    present = present_classes(data.labels, classes)
    if classes_differ(present, classes):
        raise StageError(class_mismatch(f"{where}, {part}", present, model_classes))
    predicted, _ = predict_labels(classifier, data.images)
    # No training set at hand: the baseline is always answering the set's own largest class.
    metrics = score(data.labels, predicted, model_classes, int(data.counts(len(model_classes)).argmax()))
    print(f"model: {model_path} ({classifier.engine}, {classifier.channels}x{classifier.size}x{classifier.size})")
    print(f"data: {args.dataset} ({part})")
    print(headline(metrics))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = {"model": str(model_path), "dataset": str(args.dataset), "part": part, "classes": model_classes,
                  **metrics}
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
        plot_confusion(metrics["confusion_matrix"], model_classes, out / "confusion.png",
                       f"{Path(args.dataset).name} ({part}): accuracy {metrics['accuracy']:.3f}, "
                       f"macro-F1 {metrics['macro_f1']:.3f}")
        print(f"written: {out / 'evaluation.json'}, {out / 'confusion.png'}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify the faces in an image, a folder of images or a video")
    p.add_argument("input", help="an image, a folder of images, or a video")
    add_model_arguments(p, min_face_size=20)
    p.add_argument("--out", "-o", required=True,
                   help="folder for predictions.csv and the annotated frames (required: nothing is written "
                        "into the current folder unasked); not inside INPUT or the model, nor holding them")
    p.add_argument("--faces", action="store_true", help="inputs are face crops already: skip detection")
    p.add_argument("--every", type=int, default=1, help="video: classify every Nth frame")
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser("evaluate", help="score a trained classify model on a labelled dataset")
    p.add_argument("dataset", help="a labelled dataset: class folders, split folders or a Kaggle CSV")
    p.add_argument("--model", "-m", required=True,
                   help="a model folder (with model.json), a classify stage folder, or one training set's folder")
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="split data: the split scored (default: test when present, else all of it); "
                        "flat class folders are always scored whole")
    p.add_argument("--out", "-o", help="folder for evaluation.json and confusion.png (default: print only); "
                                       "not inside DATASET or the model, nor holding them")
    p.add_argument("--classes", nargs="+", help="CSV data: the class names of its labels, in order "
                                                "(default: FER2013's seven)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.set_defaults(func=cmd_evaluate)
