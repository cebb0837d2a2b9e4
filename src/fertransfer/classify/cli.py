"""`pipeline predict INPUT --model M` (or `--run RUN`: the run's person model): classify the faces in
an image, a folder or a video; `pipeline evaluate DATASET --model M`: score a trained model on any
labelled dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from fertransfer.errors import StageError
from fertransfer.paths import check_outputs_apart

if TYPE_CHECKING:
    from fertransfer.expression.models import Classifier

    from .predict import FaceDetector


def add_model_arguments(p: argparse.ArgumentParser, min_face_size: int, run_help: str) -> None:
    """The model and detector options `predict` and `serve` share (`serve` starts at larger faces)."""
    p.add_argument("--model", "-m",
                   help="a model folder (with model.json), a classify stage folder, or one training set's folder "
                        "(default: --run's person model)")
    p.add_argument("--run", help=run_help)
    p.add_argument("--classes", nargs="+", help="the class list the model must have (default: FER2013's seven; "
                                                "with --run and no --model, the person model's own)")
    p.add_argument("--min-score", type=float, default=0.9, help="lowest MTCNN face confidence kept")
    p.add_argument("--min-face-size", type=int, default=min_face_size,
                   help="smallest face MTCNN looks for, in pixels (smaller is slower)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def chosen_model_folder(args: argparse.Namespace) -> Path:
    """--model's folder, else the person model of --run (`classify/person_model/`, the one
    `pipeline run all` names)."""
    from fertransfer.expression.models import MODEL_JSON, find_model

    from .product import PERSON_MODEL

    if args.model:
        return find_model(Path(args.model))
    if not args.run:
        raise StageError("no model: pass --model MODEL, or --run RUN to use that run's person model")
    folder = Path(args.run) / "classify" / PERSON_MODEL
    if not (folder / MODEL_JSON).is_file():
        raise StageError(f"--run {args.run}: no person model ({folder} is missing; run `pipeline run classify` "
                         "there first, or pass --model)")
    return folder


def chosen_model(args: argparse.Namespace) -> Classifier:
    """The model of chosen_model_folder; one from --run is checked against --classes only when they
    are given."""
    from .predict import load_checked_classifier

    folder = chosen_model_folder(args)
    return load_checked_classifier(folder, args.classes, device=args.device,
                                   own_classes=not args.model and not args.classes)


def load_model_and_detector(args: argparse.Namespace) -> tuple[Classifier, FaceDetector]:
    """(classifier, detector) from add_model_arguments' options; a wrong model stops here with one line."""
    from .predict import FaceDetector

    if args.min_face_size < 12:
        raise StageError(f"--min-face-size must be 12 or more (MTCNN's smallest window), got {args.min_face_size}")
    classifier = chosen_model(args)
    return classifier, FaceDetector(min_score=args.min_score, min_size=args.min_face_size, device=args.device)


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict, whole_image

    if args.every < 1:
        raise StageError(f"--every must be 1 or more, got {args.every}")
    source = Path(args.input)
    out_dir = Path(args.out)
    # A folder of images and the model are inputs the output may not overlap; beside a single file it may be.
    model = chosen_model_folder(args)  # a wrong --model is named before the output is checked
    check_outputs_apart([("--out", out_dir)], [("--model", model)] + ([("INPUT", source)] if source.is_dir() else []))
    check_outputs_apart([("--out", out_dir)], [("INPUT", source)], may_hold_inputs=True)
    if args.faces:
        classifier, detector = chosen_model(args), whole_image
    else:
        classifier, detector = load_model_and_detector(args)
    summary = predict(source, classifier, out_dir, detector=detector, every=args.every)
    print(json.dumps(summary, indent=2))
    print(f"predictions: {out_dir / summary['csv']}")
    if summary.get("timeline"):
        print(f"timeline: {out_dir / summary['timeline']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score one model on one labelled set; files only where --out says, the figures always printed.

    The set may hold a subset of the model's classes (scored on those); a class the model does not
    know is left out with a warning; --strict refuses both, as before.
    """
    from fertransfer.data import DatasetError, class_set
    from fertransfer.expression.models import find_model, load_classifier, predict_labels

    from .evaluate import headline, plot_confusion, score
    from .testsets import load_test_set

    model_path = find_model(Path(args.model))
    if args.out:
        check_outputs_apart([("--out", args.out)], [("DATASET", args.dataset), ("--model", model_path)])
    classifier = load_classifier(model_path, device=args.device)
    model_classes = list(classifier.classes)
    classes = class_set(model_classes)
    where = f"{args.dataset} (model {model_path})"
    try:  # a CSV's integer labels are in the order of --classes (default FER2013's)
        test = load_test_set(args.dataset, classes, classifier.channels, classifier.size, split=args.split,
                             csv_classes=class_set(args.classes), strict=args.strict, where=where)
    except DatasetError as error:
        raise StageError(str(error)) from None
    data, part = test.data, test.part
    predicted, _ = predict_labels(classifier, data.images)
    # No training set at hand: the baseline is always answering the set's own largest class.
    metrics = score(data.labels, predicted, model_classes, int(data.counts(len(model_classes)).argmax()))
    print(f"model: {model_path} ({classifier.engine}, {classifier.channels}x{classifier.size}x{classifier.size})")
    print(f"data: {args.dataset} ({part})")
    if test.left_out:
        print("left out (classes the model does not know): "
              + ", ".join(f"{c} {n} image{'s' if n != 1 else ''}" for c, n in test.left_out.items()))
    print(headline(metrics))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = {"model": str(model_path), "dataset": str(args.dataset), "part": part, "classes": model_classes,
                  "left_out": test.left_out, **metrics}
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
        plot_confusion(metrics["confusion_matrix"], model_classes, out / "confusion.png",
                       f"{Path(args.dataset).name} ({part}): accuracy {metrics['accuracy']:.3f}, "
                       f"macro-F1 {metrics['macro_f1']:.3f}", rows=metrics["confusion_rows"])
        print(f"written: {out / 'evaluation.json'}, {out / 'confusion.png'}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify the faces in an image, a folder of images or a video")
    p.add_argument("input", help="an image, a folder of images, or a video")
    add_model_arguments(p, min_face_size=20,
                        run_help="a run folder: its classify/person_model is the model when --model is not given")
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
    p.add_argument("--strict", action="store_true",
                   help="refuse a set whose classes are not exactly the model's (default: score the classes it "
                        "has, leave out classes the model does not know)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.set_defaults(func=cmd_evaluate)
