"""Training throughput of the classify stage's CNN on this machine, extrapolated to FER2013.

    PYTHONPATH=src python bench/classify_bench.py [--widths 32 48 64] [--images 640] [--threads 1]
    PYTHONPATH=src python bench/classify_bench.py --ema --widths 32 --threads 1   # + the weight average

Times training steps (random crop + flip, forward, backward, SGD) on random 48x48 images
and prints images/s and the implied minutes per FER2013 epoch (28,709 images), for bf16
autocast on and off (with --ema: bf16 with and without the classify CNN's moving average of
the weights, updated after every step, and their ratio). The first batches are left out as warm-up. On a busy shared machine the
wall clock measures the neighbours too; with --threads 1 the CPU time per image is a fair
measure of the work, and an idle 2-core machine runs about 1.8 times faster than one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from fertransfer.expression.cnn import (
    CnnConfig,
    FaceNet,
    ema_update_with_warmup,
    random_crop_flip,
    standardise,
    to_tensor,
)

FER_TRAIN = 28709


def bench(width: int, bf16: bool, images: int, batch: int, ema: bool = False,
          device: str = "cpu") -> tuple[float, float]:
    """(images/s wall, images per CPU-second per thread) of training steps on `device`; the
    batches are cut and augmented on the CPU, as the stage does."""
    torch.manual_seed(0)
    dev = torch.device(device)
    config = CnnConfig(width=width)
    model = FaceNet(7, 1, width).to(dev).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    average = AveragedModel(model, multi_avg_fn=ema_update_with_warmup(0.999), use_buffers=True) if ema else None
    data = to_tensor(np.random.default_rng(0).integers(0, 256, (images, 48, 48, 1), dtype=np.uint8))
    labels = torch.randint(0, 7, (images,))
    generator = torch.Generator().manual_seed(0)
    warmup, t0, c0 = 2, None, None
    done = 0
    for i, start in enumerate(range(0, images, batch)):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0, done = time.perf_counter(), time.process_time(), 0
        x = standardise(random_crop_flip(data[start : start + batch], config.crop, generator))
        x = x.to(dev).contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[start : start + batch].to(dev))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        done += len(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # On a shared machine the wall clock includes other people's work; CPU time spread over
    # our threads estimates the wall time of an otherwise idle machine.
    return done / wall, done / (cpu / torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 48, 64])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--ema", action="store_true", help="bf16 with and without the weight average, and the ratio")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.ema:
        for width in args.widths:
            # alternate the two variants so that both see the same load
            rates = {False: [], True: []}
            for _ in range(3):
                for ema in (False, True):
                    rates[ema].append(bench(width, True, args.images, args.batch, ema=ema)[0])
            plain, averaged = max(rates[False]), max(rates[True])
            print(f"width {width:3d} bf16: {plain:6.0f} images/s, with the weight average {averaged:6.0f} "
                  f"(ratio {averaged / plain:.3f})")
        return
    for width in args.widths:
        params = sum(p.numel() for p in FaceNet(7, 1, width).parameters())
        for bf16 in (False, True):
            rate, idle_rate = bench(width, bf16, args.images, args.batch)
            print(f"width {width:3d} ({params / 1e6:.2f} M params) bf16 {str(bf16):5}: "
                  f"{rate:6.0f} images/s wall ({FER_TRAIN / rate / 60:.1f} min per FER2013 epoch), "
                  f"{idle_rate:6.0f} per CPU-second/thread ({FER_TRAIN / idle_rate / 60:.1f} min)")


if __name__ == "__main__":
    main()
