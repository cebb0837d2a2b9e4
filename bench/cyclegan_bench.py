"""CycleGAN training speed: images/s per training step and peak memory, and the stage's step
against a plain eager step of the same networks.

    python bench/cyclegan_bench.py                 # the CPU cases (and the GPU ones when CUDA is present)
    python bench/cyclegan_bench.py --quick         # only the 64 px batch-4 case
    python bench/cyclegan_bench.py --versus-plain  # stage step / plain step, 64 px, batch 1, A in RGB and gray

Each case runs the real training loop (`fertransfer.cyclegan.train.train` with the stage's
defaults: resnet_6blocks_residual, lsgan, identity loss, pools, precision "auto") on random
images for a few warm-up and measured steps, in a fresh subprocess so that peak memory (max RSS
on CPU, max allocated on CUDA) is its own. Step times are read from losses.csv, warm-up steps
left out. images/s counts the images of one domain per step (batch size / seconds per step), as
the CycleGAN literature does. The last line reads `images_per_s=<x> peak_mb=<y>` for the 64 px,
batch 4, ngf 64 CPU case.

--versus-plain: in the same process, after every step of the real loop (through train()'s
`after_step` hook, outside the loop's own timing) one *plain* step runs: the same generators
and discriminators (same architecture and initial weights), plain fp32 contiguous tensors,
torch.optim.Adam with its defaults, the CycleGAN losses written the straightforward way (lsgan,
cycle L1, identity L1), one optimizer step for G and one for D. The two alternate step by step,
so both see the same machine load. Its last line reads
`speedup=<plain s/step / stage s/step> stage_s_per_step=<x> plain_s_per_step=<y>` for the
64 px, batch 1, ngf 64, RGB-A case (the settings of the real runs).
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
    import torch

    from fertransfer.cyclegan.train import TrainConfig, train

    load = size * 9 // 8
    domains = random_domains(size)
    total = warmup + steps
    cfg = TrainConfig(image_size=size, load_size=load, ngf=ngf, ndf=64, batch_size=batch, steps=total,
                      checkpoint_every=10**9, sample_every=10**9, sample_images=1, device=device,
                      precision=precision, compile=compiled, threads=threads, keep_checkpoints=1,
                      lambda_expression=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, domains, Path(tmp))
        with open(Path(tmp) / "losses.csv", newline="") as handle:
            seconds = [float(r["seconds"]) for r in csv.DictReader(handle)][warmup:]
    per_step = sum(seconds) / len(seconds)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"size": size, "batch": batch, "ngf": ngf, "device": device, "precision": summary["precision"], "compile": compiled,
            "seconds_per_step": round(per_step, 4), "images_per_s": round(batch / per_step, 2),
            "peak_mb": round(peak_mb), "measured_steps": len(seconds)}


class PlainStep:
    """One plain eager CycleGAN training step, the reference the stage's step is compared with."""

    def __init__(self, cfg, seed: int = 0):
        import torch

        from fertransfer.cyclegan.models import build_discriminator, build_generator

        torch.manual_seed(seed)
        a, b = cfg.a_channels, cfg.b_channels
        self.cfg = cfg
        self.G_AB = build_generator(cfg.generator, a, b, cfg.ngf, cfg.image_size)
        self.G_BA = build_generator(cfg.generator, b, a, cfg.ngf, cfg.image_size)
        self.D_A = build_discriminator(a, cfg.ndf, cfg.n_layers)
        self.D_B = build_discriminator(b, cfg.ndf, cfg.n_layers)
        self.opt_G = torch.optim.Adam([*self.G_AB.parameters(), *self.G_BA.parameters()], lr=cfg.lr,
                                      betas=(cfg.beta1, 0.999))
        self.opt_D = torch.optim.Adam([*self.D_A.parameters(), *self.D_B.parameters()], lr=cfg.lr,
                                      betas=(cfg.beta1, 0.999))

    def __call__(self, domains, rng) -> tuple[float, float]:
        """Sample a batch of each domain as the stage does, then update G and D; their losses."""
        import torch
        import torch.nn.functional as F

        from fertransfer.cyclegan.tensors import match_channels, to_tensor
        from fertransfer.cyclegan.train import sample_batch

        cfg = self.cfg
        real_A = to_tensor(sample_batch(domains.train_a, rng, cfg.batch_size, cfg.image_size, cfg.flip), cfg.a_channels)
        real_B = to_tensor(sample_batch(domains.train_b, rng, cfg.batch_size, cfg.image_size, cfg.flip), cfg.b_channels)
        fake_B, fake_A = self.G_AB(real_A), self.G_BA(real_B)
        rec_A, rec_B = self.G_BA(fake_B), self.G_AB(fake_A)
        same_B = self.G_AB(match_channels(real_B, cfg.a_channels))
        same_A = self.G_BA(match_channels(real_A, cfg.b_channels))
        score_B, score_A = self.D_B(fake_B), self.D_A(fake_A)
        loss_G = (F.mse_loss(score_B, torch.ones_like(score_B)) + F.mse_loss(score_A, torch.ones_like(score_A))
                  + cfg.lambda_cycle * (F.l1_loss(rec_A, real_A) + F.l1_loss(rec_B, real_B))
                  + cfg.lambda_cycle * cfg.lambda_identity * (F.l1_loss(same_A, real_A) + F.l1_loss(same_B, real_B)))
        self.opt_G.zero_grad()
        loss_G.backward()
        self.opt_G.step()
        real_A_score, fake_A_score = self.D_A(real_A), self.D_A(fake_A.detach())
        real_B_score, fake_B_score = self.D_B(real_B), self.D_B(fake_B.detach())
        loss_D = 0.5 * (F.mse_loss(real_A_score, torch.ones_like(real_A_score))
                        + F.mse_loss(fake_A_score, torch.zeros_like(fake_A_score))
                        + F.mse_loss(real_B_score, torch.ones_like(real_B_score))
                        + F.mse_loss(fake_B_score, torch.zeros_like(fake_B_score)))
        self.opt_D.zero_grad()
        loss_D.backward()
        self.opt_D.step()
        return loss_G.item(), loss_D.item()


def versus_plain_case(size: int, batch: int, ngf: int, a_channels: int, warmup: int, steps: int, threads: int,
                      **stage_options) -> dict:
    """The stage's step and the plain step, alternating in one process; seconds per step of each."""
    import time

    import numpy as np

    from fertransfer.cyclegan.train import TrainConfig, train

    domains = random_domains(size, a_channels)
    total = warmup + steps
    cfg = TrainConfig(image_size=size, load_size=size * 9 // 8, a_channels=a_channels, ngf=ngf, ndf=64,
                      batch_size=batch, steps=total, checkpoint_every=10**9, sample_every=10**9, sample_images=1,
                      device="cpu", threads=threads, keep_checkpoints=1, **{"lambda_expression": 0.0, **stage_options})
    plain = PlainStep(cfg)
    plain_rng = np.random.default_rng(1)
    plain_seconds: list[float] = []

    def plain_step(step: int) -> None:
        t0 = time.perf_counter()
        plain(domains, plain_rng)
        plain_seconds.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, domains, Path(tmp), after_step=plain_step)
        with open(Path(tmp) / "losses.csv", newline="") as handle:
            stage_seconds = [float(r["seconds"]) for r in csv.DictReader(handle)][warmup:]
    stage, plain_mean = sum(stage_seconds) / len(stage_seconds), sum(plain_seconds[warmup:]) / steps
    return {"size": size, "batch": batch, "ngf": ngf, "a_channels": a_channels, "precision": summary["precision"],
            "plain_s_per_step": round(plain_mean, 4), "stage_s_per_step": round(stage, 4),
            "speedup": round(plain_mean / stage, 3), "measured_steps": steps}


def random_domains(size: int, a_channels: int = 3):
    """Random uint8 images at 9/8 of the training size (the stage's load size), both domains."""
    import numpy as np

    from fertransfer.cyclegan.data import Domains

    rng = np.random.default_rng(0)
    load = size * 9 // 8
    return Domains(
        rng.integers(0, 255, (64, load, load, a_channels), dtype=np.uint8),
        rng.integers(0, 255, (64, load, load, 1), dtype=np.uint8),
        rng.integers(0, 255, (2, size, size, a_channels), dtype=np.uint8),
        rng.integers(0, 255, (2, size, size, 1), dtype=np.uint8), {},
    )


def run_in_subprocess(kind: str = "one_case", **case) -> dict:
    """`kind` (one_case or versus_plain_case) with these arguments, in a fresh Python process."""
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps({"kind": kind, **case})],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 64 px batch-4 CPU case")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: all cores; 1 is the stage's default)")
    parser.add_argument("--versus-plain", action="store_true",
                        help="the stage's step against a plain eager step, alternating in one process")
    parser.add_argument("--steps", type=int, default=12, help="--versus-plain: measured steps per case (after 3 warm-up)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="--versus-plain: a TrainConfig field of the stage's run (e.g. precision=fp32), repeatable")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case = json.loads(args.one)
        run = {"one_case": one_case, "versus_plain_case": versus_plain_case}[case.pop("kind")]
        print(json.dumps(run(**case)))
        return 0

    import os

    import torch

    from fertransfer.pipelines.runner import machine_description

    threads = args.threads or os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"# CPU: {machine_description()}, torch {torch.__version__}, {threads} thread(s), "
          f"load average {load:.1f} at the start")
    if args.versus_plain:
        return versus_plain(threads, args.steps, dict(parse_setting(s) for s in args.set))
    cases = [c for c in CPU_CASES if not args.quick or c[:3] == (64, 4, 64)]
    results = []
    print("| device | size | batch | ngf | precision | compile | s/step | images/s | peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def show(r: dict) -> None:
        print(f"| {r['device']} | {r['size']} | {r['batch']} | {r['ngf']} | {r['precision']} | {r['compile']} | "
              f"{r['seconds_per_step']:.3f} | {r['images_per_s']:.2f} | {r['peak_mb']} |", flush=True)

    for size, batch, ngf, warmup, steps in cases:
        results.append(run_in_subprocess(size=size, batch=batch, ngf=ngf, warmup=warmup, steps=steps, device="cpu",
                                         precision="auto", compiled=False, threads=threads))
        show(results[-1])
    if torch.cuda.is_available() and not args.quick:
        print(f"# GPU: {torch.cuda.get_device_name()}")
        for size, batch, ngf, precision, compiled in GPU_CASES:
            show(run_in_subprocess(size=size, batch=batch, ngf=ngf, warmup=5 if compiled else 3, steps=20,
                                   device="cuda", precision=precision, compiled=compiled, threads=threads))
    key = next(r for r in results if (r["size"], r["batch"], r["ngf"]) == (64, 4, 64))
    print(f"images_per_s={key['images_per_s']} peak_mb={key['peak_mb']}")
    return 0


VERSUS_PLAIN_CASES = [  # (image size, batch, ngf, a_channels): the real runs' settings first
    (64, 1, 64, 3), (64, 1, 64, 1),
]


def parse_setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON when it is (numbers, true/false), else as a string."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def versus_plain(threads: int, steps: int, stage_options: dict) -> int:
    """Print the table of plain and stage seconds per step, and the last line for the first case."""
    import os

    if stage_options:
        print(f"# stage options: {stage_options}")
    print("| size | batch | ngf | A channels | stage precision | plain s/step | stage s/step | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for size, batch, ngf, a_channels in VERSUS_PLAIN_CASES:
        r = run_in_subprocess("versus_plain_case", size=size, batch=batch, ngf=ngf, a_channels=a_channels, warmup=3,
                              steps=steps, threads=threads, **stage_options)
        results.append(r)
        print(f"| {size} | {batch} | {ngf} | {a_channels} | {r['precision']} | {r['plain_s_per_step']:.3f} | "
              f"{r['stage_s_per_step']:.3f} | {r['speedup']:.2f}x |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    key = results[0]
    print(f"speedup={key['speedup']} stage_s_per_step={key['stage_s_per_step']} "
          f"plain_s_per_step={key['plain_s_per_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
