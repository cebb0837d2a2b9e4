"""How fast the augment stage translates FER images on CPU at 64 px.

The generator has the real architecture (resnet_6blocks, ngf 64, as in the cyclegan stage's
defaults) with untrained weights from `fertransfer.cyclegan.testing.tiny_checkpoint`; speed does
not depend on the weights. Images go through the stage's own path (`load_generator`, then
`translate_images` over the cyclegan `Translator`), on FER2013 train images when ../shared/data
is present, once in fp32 and once with the stage's default precision (auto: bf16 autocast on a
CPU with native bf16).

Usage: python bench/augment_bench.py [--images N] [--threads 2] [--batch-size 64]
Last line: `images_per_s=<x>` (the stage's default precision).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fertransfer.augment.core import translate_images
from fertransfer.augment.stage import load_generator
from fertransfer.cyclegan.testing import tiny_checkpoint
from fertransfer.pipelines.runner import machine_description

FER_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "train"
FER_TRAIN_IMAGES = 28_709


def fer_images(count: int) -> tuple[np.ndarray, str]:
    if FER_TRAIN.is_dir():
        from fertransfer.data import load_image_folder

        images, _ = load_image_folder(FER_TRAIN, channels=1)
        return images[np.random.default_rng(0).permutation(len(images))[:count]], f"FER2013 train ({FER_TRAIN})"
    return np.random.default_rng(0).integers(0, 256, (count, 48, 48, 1), dtype=np.uint8), "random 48x48 gray"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--generator", default="resnet_6blocks")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=["fp32", "bf16", "auto"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, source = fer_images(args.images)
    print(f"machine: {machine_description()}, load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}, {args.threads} threads")
    print(f"data: {len(images)} images from {source}; generator {args.generator} ngf {args.ngf} at {args.size} px, "
          f"batch {args.batch_size}")
    rate = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_checkpoint(Path(tmp) / "latest.pt", image_size=args.size, a_channels=3, b_channels=1,
                               ngf=args.ngf, generator=args.generator)
        for precision in args.precisions:
            generator = load_generator(path, "BtoA", "cpu", precision)
            warm = images[: args.batch_size]
            translate_images(warm, generator.fn, generator.spec, args.batch_size, progress=False)
            start, cpu_start = time.perf_counter(), time.process_time()
            translate_images(images, generator.fn, generator.spec, args.batch_size, progress=False)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            rate = len(images) / seconds
            # On a shared machine the wall clock includes waiting for the CPU; CPU time does not.
            idle_rate = len(images) / cpu_seconds * args.threads
            print(f"precision {precision} (ran as {generator.precision}): {seconds:.1f} s, {rate:.1f} images/s; "
                  f"FER2013 train ({FER_TRAIN_IMAGES}) would take {FER_TRAIN_IMAGES / rate / 60:.1f} min; "
                  f"CPU time {cpu_seconds:.1f} s, i.e. {idle_rate:.1f} images/s on {args.threads} idle cores "
                  f"({FER_TRAIN_IMAGES / idle_rate / 60:.1f} min)", flush=True)
    print(f"images_per_s={rate:.1f}")


if __name__ == "__main__":
    main()
