"""Is a fine-tuned model's FER loss in its weights or in BatchNorm's running statistics?

    PYTHONPATH=src python experiments/batchnorm_statistics.py \\
        real=runs/mead_M030_adapt/classify/real \\
        real+synthetic=runs/mead_M030_adapt/classify/real_synthetic \\
        --fer ../shared/data/fer2013 --person-test runs/mead_M030/extract/person_test

Fine-tuning on real FER plus added images (translations, ordinary augmentations) costs FER accuracy
(docs/results.md, the adapt protocol). BatchNorm's running statistics follow whatever the network
was last trained on, so the cost may sit in them alone. For every model (a CNN model folder, or a
classify set folder: its `model/` and each `seed_<n>/model/`), this scores FER's test split and the
person's faces as the model is, then again with its BatchNorm statistics re-estimated on real FER
train images (the training crops and flips, every weight unchanged). If FER recovers, the
statistics were the cost: `[classify] finetune_batchnorm = "real"` re-estimates them so after
fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fertransfer.augment.build import load_faces
from fertransfer.classify.testsets import load_test_set
from fertransfer.data import load_dataset
from fertransfer.data.classes import class_set
from fertransfer.expression.cnn import reestimate_batchnorm
from fertransfer.expression.models import load_classifier


def model_folders(name: str, folder: Path) -> dict[str, Path]:
    """{label: model folder}: the folder itself when it is a model, else a set's model/ and seed_<n>/model/."""
    if (folder / "model.json").is_file():
        return {name: folder}
    found = {f"{name} seed {json.loads((f / 'metrics.json').read_text())['seed']}": f / "model"
             for f in [folder, *sorted(folder.glob("seed_*"))] if (f / "model" / "model.json").is_file()}
    if not found:
        raise ValueError(f"{folder}: neither a model folder (model.json) nor a classify set folder with model/")
    return found


def face_images(folder: Path, size: int, channels: int) -> np.ndarray:
    """Every image under `folder`, as augment reads the person's faces (in file order)."""
    images = load_faces(folder, sys.maxsize, size, channels, seed=0)
    if not len(images):
        raise ValueError(f"{folder}: no images")
    return images


def accuracy(classifier, images: np.ndarray, labels: np.ndarray, tta: str) -> float:
    return float((classifier.predict_proba(images, tta=tta).argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="NAME=FOLDER", help="a model folder or a classify set folder")
    parser.add_argument("--fer", required=True, type=Path, help="the FER dataset the models were trained on")
    parser.add_argument("--person-test", type=Path, help="the person's labelled faces (optional)")
    parser.add_argument("--statistics-from", type=Path, metavar="FOLDER",
                        help="re-estimate on these faces instead of FER train: e.g. the person's unlabelled "
                             "footage (extract's faces/), the adaptation of BatchNorm to a new domain (AdaBN, Li et "
                             "al. 2016); never the person's test faces")
    parser.add_argument("--images", type=int, default=6400,
                        help="images for the statistics (a face folder is cycled through, new crops each time)")
    parser.add_argument("--tta", default="flip", choices=("center", "flip", "tencrop"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        named = dict(item.split("=", 1) for item in args.models)
    except ValueError:
        parser.error("each model is NAME=FOLDER")
    try:
        folders = {label: path for name, folder in named.items() for label, path in model_folders(name, Path(folder)).items()}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    fer = load_dataset(args.fer)
    train, test = fer["train"], fer["test"]
    rng = np.random.default_rng(0)
    if args.statistics_from:
        try:
            faces = face_images(args.statistics_from, train.images.shape[1], train.images.shape[3])
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        statistics_images, source = faces[np.arange(args.images) % len(faces)], f"{len(faces)} faces of {args.statistics_from}"
    else:
        chosen = rng.choice(len(train.labels), min(args.images, len(train.labels)), replace=False)
        statistics_images, source = train.images[chosen], f"{len(chosen)} FER train images"
    rows = {}
    print(f"FER test: {len(test.labels)} images; statistics re-estimated on {source} ({len(statistics_images)} "
          f"crops); tta {args.tta}")
    print("| model | FER test | re-estimated | person | re-estimated |\n|---|---:|---:|---:|---:|")
    for label, path in folders.items():
        classifier = load_classifier(path)
        person = None
        if args.person_test:
            person = load_test_set(args.person_test, class_set(classifier.classes), classifier.channels,
                                   classifier.size).data
        fixed = reestimate_batchnorm(classifier, statistics_images)
        row = {"fer": accuracy(classifier, test.images, test.labels, args.tta),
               "fer_reestimated": accuracy(fixed, test.images, test.labels, args.tta)}
        if person is not None:
            row |= {"person": accuracy(classifier, person.images, person.labels, args.tta),
                    "person_reestimated": accuracy(fixed, person.images, person.labels, args.tta)}
        rows[label] = row
        cells = [f"{100 * row[k]:.1f}" if k in row else "-" for k in ("fer", "fer_reestimated", "person", "person_reestimated")]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
