"""CycleGAN training speed: images/s per training step and peak memory.

    python bench/cyclegan_bench.py            # the CPU cases (and the GPU ones when CUDA is present)
    python bench/cyclegan_bench.py --quick    # only the 64 px batch-4 case

Each case runs the real training loop (`fertransfer.cyclegan.train.train`, resnet_6blocks,
lsgan, identity loss, pools) on random images for a few warm-up and measured steps, in a
fresh subprocess so that peak memory (max RSS on CPU, max allocated on CUDA) is its own.
Step times are read from losses.csv, warm-up steps left out. images/s counts the images of
one domain per step (batch size / seconds per step), as the CycleGAN literature does.
The last line reads `images_per_s=<x> peak_mb=<y>` for the 64 px, batch 4, ngf 64 CPU case.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CPU_CASES = [  # (image size, batch, ngf, warm-up steps, measured steps)
    (64, 1, 64, 2, 8), (64, 4, 64, 1, 4), (128, 1, 64, 1, 4), (128, 4, 64, 1, 2),
    (64, 1, 32, 2, 8), (64, 4, 32, 1, 4),
]
GPU_CASES = [  # (size, batch, ngf, precision, compile)
    (size, batch, 64, precision, compiled)
    for size in (128, 256) for batch in (1, 4) for precision in ("fp32", "bf16") for compiled in (False, True)
]


def one_case(size: int, batch: int, ngf: int, warmup: int, steps: int, device: str, precision: str,
             compiled: bool, threads: int) -> dict:
    import numpy as np
    import torch

    from fertransfer.cyclegan.data import Domains
    from fertransfer.cyclegan.train import TrainConfig, train

    rng = np.random.default_rng(0)
    load = size * 9 // 8
    domains = Domains(
        rng.integers(0, 255, (64, load, load, 3), dtype=np.uint8), rng.integers(0, 255, (64, load, load, 1), dtype=np.uint8),
        rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8), rng.integers(0, 255, (2, size, size, 1), dtype=np.uint8), {},
    )
    total = warmup + steps
    cfg = TrainConfig(image_size=size, load_size=load, ngf=ngf, ndf=64, batch_size=batch, steps=total,
                      checkpoint_every=10**9, sample_every=10**9, sample_images=1, device=device,
                      precision=precision, compile=compiled, threads=threads, keep_checkpoints=1)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, domains, Path(tmp))
        with open(Path(tmp) / "losses.csv", newline="") as handle:
            seconds = [float(r["seconds"]) for r in csv.DictReader(handle)][warmup:]
    per_step = sum(seconds) / len(seconds)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"size": size, "batch": batch, "ngf": ngf, "device": device, "precision": precision, "compile": compiled,
            "seconds_per_step": round(per_step, 4), "images_per_s": round(batch / per_step, 2),
            "peak_mb": round(peak_mb), "measured_steps": len(seconds)}


def run_in_subprocess(**case) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 64 px batch-4 CPU case")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: all cores; 1 is the stage's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_case(**json.loads(args.one))))
        return 0

    import os

    import torch

    from fertransfer.pipelines.runner import machine_description

    threads = args.threads or os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"# CPU: {machine_description()}, torch {torch.__version__}, {threads} thread(s), "
          f"load average {load:.1f} at the start")
    cases = [c for c in CPU_CASES if not args.quick or c[:3] == (64, 4, 64)]
    results = []
    print("| device | size | batch | ngf | precision | compile | s/step | images/s | peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def show(r: dict) -> None:
        print(f"| {r['device']} | {r['size']} | {r['batch']} | {r['ngf']} | {r['precision']} | {r['compile']} | "
              f"{r['seconds_per_step']:.3f} | {r['images_per_s']:.2f} | {r['peak_mb']} |", flush=True)

    for size, batch, ngf, warmup, steps in cases:
        results.append(run_in_subprocess(size=size, batch=batch, ngf=ngf, warmup=warmup, steps=steps, device="cpu",
                                         precision="fp32", compiled=False, threads=threads))
        show(results[-1])
    if torch.cuda.is_available() and not args.quick:
        print(f"# GPU: {torch.cuda.get_device_name()}")
        for size, batch, ngf, precision, compiled in GPU_CASES:
            show(run_in_subprocess(size=size, batch=batch, ngf=ngf, warmup=5 if compiled else 3, steps=20,
                                   device="cuda", precision=precision, compiled=compiled, threads=threads))
    key = next(r for r in results if (r["size"], r["batch"], r["ngf"]) == (64, 4, 64))
    print(f"images_per_s={key['images_per_s']} peak_mb={key['peak_mb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
