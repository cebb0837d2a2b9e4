"""How much the blurred FER2013 training split costs: the same CNN on sharp and blurred faces.

    PYTHONPATH=src python experiments/blur_gap.py [--fer ../shared/data/fer2013] [--epochs 20]

The shared copy of FER2013 has a blurred train split and sharp PublicTest/PrivateTest splits.
To see what the blur alone costs, this trains the classify stage's CNN on training sets of the
same size and class mix, selects each on the same sharp validation images and scores each once
on PrivateTest:

    blurred, test blurred      N images drawn from the blurred train split, input_blur = sigma (3)
                               (the faces classified are blurred like the training faces)
    blurred twice, test blurred  the same images blurred once more by sigma for training: what
                               input_blur did before it stopped touching the training images
    sharp                      N sharp images: PublicTest minus the validation part
    blurred, test sharp        the blurred images, sharp faces classified as they are

Validation is a stratified fifth of PublicTest, so the sharp run never sees its validation
images, and nothing is selected on PrivateTest. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fertransfer.classify.cnn import CnnConfig, blur, train_cnn
from fertransfer.classify.evaluate import score
from fertransfer.data import FER_CLASSES, ImageSet, load_dataset, stratified_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer", default="../shared/data/fer2013")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=3.0, help="the blur of the train split (see docs/results.md)")
    args = parser.parse_args()

    fer = load_dataset(args.fer)
    classes = list(FER_CLASSES)
    public, private, train = fer["val"], fer["test"], fer["train"]
    sharp_index, val_index = stratified_split(public.labels, 0.2, args.seed)
    sharp, val = public.subset(sharp_index), public.subset(val_index)
    # The blurred training images: as many per class as the sharp set has.
    rng = np.random.default_rng(args.seed)
    blurred_index = np.concatenate([
        rng.choice(np.flatnonzero(train.labels == label), count, replace=False)
        for label, count in enumerate(sharp.counts(len(classes)))
    ])
    blurred = train.subset(np.sort(blurred_index))
    majority = int(np.argmax(sharp.counts(len(classes))))
    print(f"training images per run: {len(sharp)}; validation {len(val)} (PublicTest); test {len(private)} (PrivateTest)")

    twice = ImageSet(blur(blurred.images, args.sigma), blurred.labels, blurred.files)
    runs = [("blurred, test blurred", blurred, args.sigma), ("blurred twice, test blurred", twice, args.sigma),
            ("sharp", sharp, 0.0), ("blurred, test sharp", blurred, 0.0)]
    rows = []
    for name, data, sigma in runs:
        config = CnnConfig(width=args.width, epochs=args.epochs, patience=0, tta="tencrop", input_blur=sigma)
        t0 = time.perf_counter()
        result = train_cnn(data.images, data.labels, val.images, val.labels, classes, config, seed=args.seed)
        seconds = time.perf_counter() - t0
        predicted = result.classifier.predict_proba(private.images).argmax(axis=1)
        test = score(private.labels, predicted, classes, majority)
        best = result.history[result.best_epoch - 1]
        rows.append((name, sigma, best["train_acc"], best["val_acc"], result.best_epoch, test["accuracy"],
                     test["macro_f1"], seconds))
        print(f"{name}: PrivateTest {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}, {seconds:.0f} s", flush=True)

    print("\n| training images | input_blur (classified faces) | train acc (best epoch) | val acc | best epoch | PrivateTest | macro-F1 | time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, sigma, train_acc, val_acc, epoch, acc, f1, seconds in rows:
        print(f"| {name} | {sigma:g} | {train_acc:.3f} | {val_acc:.3f} | {epoch} | {acc:.3f} | {f1:.3f} | {seconds / 60:.1f} min |")


if __name__ == "__main__":
    main()
