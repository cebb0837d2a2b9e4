"""`pipeline predict INPUT --model M`: classify the faces in an image, a folder or a video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fertransfer.pipelines.stage import StageError


def cmd_predict(args: argparse.Namespace) -> int:
    from fertransfer.data import class_set

    from .models import find_model, load_classifier
    from .predict import FaceDetector, check_classes, predict, whole_image

    if args.every < 1:
        raise StageError(f"--every must be 1 or more, got {args.every}")
    model_path = find_model(Path(args.model))
    classifier = load_classifier(model_path, device=args.device)
    check_classes(classifier, list(class_set(args.classes).names), model_path)
    source = Path(args.input)
    out_dir = Path(args.out) if args.out else Path(f"{source.stem or 'input'}_predictions")
    detector = whole_image if args.faces else FaceDetector(min_score=args.min_score, device=args.device)
    summary = predict(source, classifier, out_dir, detector=detector, every=args.every)
    print(json.dumps(summary, indent=2))
    print(f"predictions: {out_dir / summary['csv']}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify the faces in an image, a folder of images or a video")
    p.add_argument("input", help="an image, a folder of images, or a video")
    p.add_argument("--model", "-m", required=True,
                   help="a model folder (with model.json), a classify stage folder, or one training set's folder")
    p.add_argument("--out", "-o", help="output folder (default: <input name>_predictions)")
    p.add_argument("--classes", nargs="+", help="the class list the model must have (default: FER2013's seven)")
    p.add_argument("--faces", action="store_true", help="inputs are face crops already: skip detection")
    p.add_argument("--every", type=int, default=1, help="video: classify every Nth frame")
    p.add_argument("--min-score", type=float, default=0.9, help="lowest MTCNN face confidence kept")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.set_defaults(func=cmd_predict)
