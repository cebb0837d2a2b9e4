"""How sharp are a set's faces at the classifier's input, and how far does resample_blur move FER's?

    PYTHONPATH=src python experiments/sharpness.py \\
        FER=../shared/data/fer2013/test M030=runs/mead_M030/extract/person_test --soften FER

A person's video crops can be softer than FER2013's faces, a gap the classifier sees and FER alone
never shows it. Sharpness is `pipeline inspect`'s (`fertransfer.data.inspect`): the mean absolute
Laplacian of each face, standardised on its own so that contrast and brightness do not count, here
with every face brought to the classifier's input (grey, `--size` px, as classify reads it). `--soften NAME`
also scores that set through `random_resample` (every image; resample_blur = 1) and through the
48 -> 64 -> 48 px round trip that augment's mixed sets once gave their real images
(docs/results.md, session 29).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fertransfer.augment.build import load_faces
from fertransfer.data.images import fit_square
from fertransfer.data.inspect import sharpness_values
from fertransfer.expression.cnn import random_resample, to_tensor


def round_trip(images: np.ndarray, size: int) -> np.ndarray:
    """Up to the generator's 64 px and back, with the resize augment and classify use (bilinear up,
    area down): the blur augment's mixed sets once gave their real images."""
    return np.stack([fit_square(fit_square(face, 64), size) for face in images])


def resampled(images: np.ndarray, seed: int) -> np.ndarray:
    softened = random_resample(to_tensor(images), 1.0, torch.Generator().manual_seed(seed))
    return softened.numpy().transpose(0, 2, 3, 1)


def row(name: str, values: np.ndarray) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"| {name} | {len(values)} | {values.mean():.3f} | {median:.3f} | {q1:.3f}-{q3:.3f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", metavar="NAME=FOLDER", help="a folder of faces (searched recursively)")
    parser.add_argument("--size", type=int, default=48, help="the classifier's input size")
    parser.add_argument("--limit", type=int, default=2000, help="at most this many faces per set (a random draw)")
    parser.add_argument("--soften", action="append", default=[], metavar="NAME",
                        help="also score this set resampled and round-tripped")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    lines = ["| faces | n | mean sharpness | median | quartiles |", "| --- | ---: | ---: | ---: | --- |"]
    for spec in args.sets:
        name, _, folder = spec.partition("=")
        if not folder or not Path(folder).is_dir():
            print(f"error: {spec}: expected NAME=FOLDER with an existing folder", file=sys.stderr)
            return 2
        images = load_faces(Path(folder), args.limit, args.size, 1, args.seed)
        if not len(images):
            print(f"error: {folder}: no images", file=sys.stderr)
            return 2
        lines.append(row(name, sharpness_values(images)))
        if name in args.soften:
            lines.append(row(f"{name}, resample_blur (every image)", sharpness_values(resampled(images, args.seed))))
            lines.append(row(f"{name}, 48 -> 64 -> 48 px", sharpness_values(round_trip(images, args.size))))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
