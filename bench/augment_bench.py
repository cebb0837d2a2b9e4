"""How fast the augment stage translates FER images on CPU at 64 px.

The generator has the real architecture (resnet_6blocks, ngf 64, as in the cyclegan stage's
defaults) with untrained weights from `fertransfer.cyclegan.testing.tiny_checkpoint`; speed does
not depend on the weights. Images go through the stage's own path (`translate_images` with the
cyclegan `Translator`), on FER2013 train images when ../shared/data is present.

Usage: python bench/augment_bench.py [--images N] [--threads 2] [--batch-size 64] [--bf16-what-if]
Last line: `images_per_s=<x>` (the stage's path, as shipped).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fertransfer.augment.build import callable_generator
from fertransfer.augment.core import translate_images
from fertransfer.cyclegan.testing import tiny_checkpoint
from fertransfer.cyclegan.translate import Translator

FER_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "train"
FER_TRAIN_IMAGES = 28_709


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    parser.add_argument("--bf16-what-if", action="store_true",
                        help="also time the same generator under CPU bf16 autocast (not what the stage does yet)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, source = fer_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_checkpoint(Path(tmp) / "latest.pt", image_size=args.size, a_channels=3, b_channels=1,
                               ngf=args.ngf, generator=args.generator)
        translator = Translator.from_checkpoint(path, direction="BtoA", device="cpu")
    generator = callable_generator(translator, "bench")
    translate_images(images[: args.batch_size], generator.fn, generator.spec, args.batch_size, progress=False)  # warm-up
    start = time.perf_counter()
    translate_images(images, generator.fn, generator.spec, args.batch_size, progress=False)
    seconds = time.perf_counter() - start
    rate = len(images) / seconds
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, {args.threads} threads")
    print(f"data: {len(images)} images from {source}; generator {args.generator} ngf {args.ngf} at {args.size} px, "
          f"batch {args.batch_size}")
    print(f"stage path (Translator.translate, fp32): {seconds:.1f} s, {rate:.1f} images/s; "
          f"FER2013 train ({FER_TRAIN_IMAGES}) would take {FER_TRAIN_IMAGES / rate / 60:.1f} min")
    if args.bf16_what_if:
        from fertransfer.augment.transforms import conform

        x = torch.from_numpy(conform(images, args.size, 1)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        net = translator.generator
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(x[: args.batch_size])
            start = time.perf_counter()
            for i in range(0, len(x), args.batch_size):
                net(x[i : i + args.batch_size])
            bf16 = len(x) / (time.perf_counter() - start)
        print(f"what-if, bf16 autocast on CPU: {bf16:.1f} images/s; FER2013 train would take "
              f"{FER_TRAIN_IMAGES / bf16 / 60:.1f} min")
    print(f"images_per_s={rate:.1f}")


if __name__ == "__main__":
    main()
