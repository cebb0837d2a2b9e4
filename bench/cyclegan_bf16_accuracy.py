"""bf16 autocast against fp32 in the real training loop: do the losses stay close?

    python bench/cyclegan_bf16_accuracy.py              # 200 steps each, the demo's network sizes
    python bench/cyclegan_bf16_accuracy.py --steps 400

Runs `fertransfer.cyclegan.train.train` twice with the same seed (same initial weights, batches
and pools), `precision = "fp32"` and `"bf16"`, 32 px, ngf/ndf 16, batch 1, 1 thread, on smooth
random images, and prints each loss's mean over the last 50 steps in both runs, their relative
difference, and the SWDs at the end. bf16 is the stage's default on CPUs with AMX; this is the
check that it trains like fp32.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fertransfer.cyclegan.data import Domains
from fertransfer.cyclegan.train import TrainConfig, train

LOSSES = ("G", "G_AB", "G_BA", "cycle_A", "cycle_B", "same_A", "same_B", "D_A", "D_B")


def smooth_domains(size: int, held_size: int, seed: int = 0) -> Domains:
    """Upscaled 6x6 noise: images with some structure for the networks to learn, RGB A and gray B."""
    rng = np.random.default_rng(seed)

    def images(n: int, channels: int, side: int) -> np.ndarray:
        noise = rng.integers(0, 255, (n, 6, 6, channels), dtype=np.uint8)
        return np.stack([cv2.resize(x, (side, side)).reshape(side, side, channels) for x in noise])

    return Domains(images(64, 3, size), images(64, 1, size), images(16, 3, held_size), images(16, 1, held_size), {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    domains = smooth_domains(36, 32)
    losses: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            cfg = TrainConfig(image_size=32, load_size=36, ngf=16, ndf=16, steps=args.steps, checkpoint_every=10**9,
                              sample_every=args.steps, sample_images=2, threads=1, device="cpu", precision=precision,
                              lambda_expression=0.0)
            summary = train(cfg, domains, Path(tmp) / precision)
            with open(Path(tmp) / precision / "losses.csv", newline="") as handle:
                losses[precision] = list(csv.DictReader(handle))
            print(f"# {precision}: {summary['seconds_per_step']} s/step, SWD at the end {summary['swd']}", flush=True)
    last = min(50, args.steps)
    print(f"| loss | fp32, mean of the last {last} steps | bf16 | relative difference |")
    print("| --- | --- | --- | --- |")
    for key in LOSSES:
        fp32, bf16 = (np.mean([float(r[key]) for r in losses[p][-last:]]) for p in ("fp32", "bf16"))
        print(f"| {key} | {fp32:.4f} | {bf16:.4f} | {abs(bf16 - fp32) / abs(fp32):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
