"""One CycleGAN training step in several variants, alternating in one process: which change pays?

    python bench/cyclegan_step_variants.py                      # every variant against "plain"
    python bench/cyclegan_step_variants.py plain bf16 bf16_batched --rounds 8

A variant is the plain eager step (the reference of `cyclegan_bench.py --versus-plain`) with one
or more changes: channels-last tensors and weights, bf16 autocast, foreach or fused Adam, D's
parameters frozen during G's backward, oneDNN's fp32 convolutions in bf16, and the batched calls
the stage makes (identity images with the translations in one generator call, real and fake in
one discriminator call). All variants start from the same weights (64 px, batch 1, ngf/ndf 64,
resnet_6blocks_residual, 1 thread) and run `--per` steps each in turn, `--rounds` times, so that
they share the machine's load; the first variant named is the reference of the speed-ups.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from fertransfer.cyclegan.models import build_discriminator, build_generator
from fertransfer.cyclegan.tensors import match_channels

VARIANTS: dict[str, dict] = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "foreach_adam": {"adam": {"foreach": True}},
    "fused_adam": {"adam": {"fused": True}},
    "freeze_D": {"freeze_D": True},
    "mkldnn_conv_bf16": {"mkldnn_conv_precision": "bf16"},
    "batched": {"batched": True},
    "bf16": {"bf16": True},
    "bf16_channels_last": {"bf16": True, "channels_last": True},
    "bf16_fused_adam": {"bf16": True, "adam": {"fused": True}},
    "bf16_batched": {"bf16": True, "batched": True},
}


def build_networks(a_channels: int, size: int = 64, ngf: int = 64, ndf: int = 64) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"G_AB": build_generator("resnet_6blocks_residual", a_channels, 1, ngf, size),
            "G_BA": build_generator("resnet_6blocks_residual", 1, a_channels, ngf, size),
            "D_A": build_discriminator(a_channels, ndf, 3), "D_B": build_discriminator(1, ndf, 3)}


def make_step(base: dict[str, torch.nn.Module], a_channels: int, size: int = 64, channels_last: bool = False,
              bf16: bool = False, adam: dict | None = None, freeze_D: bool = False, batched: bool = False,
              mkldnn_conv_precision: str | None = None) -> Callable[[], tuple[float, float]]:
    """A step function over its own copy of the networks and optimizers, with the given changes."""
    nets = {name: copy.deepcopy(net) for name, net in base.items()}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for net in nets.values():
        net.to(memory_format=memory_format)
    G_AB, G_BA, D_A, D_B = nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"]
    G_params, D_params = [*G_AB.parameters(), *G_BA.parameters()], [*D_A.parameters(), *D_B.parameters()]
    opt_G = torch.optim.Adam(G_params, lr=2e-4, betas=(0.5, 0.999), **(adam or {}))
    opt_D = torch.optim.Adam(D_params, lr=2e-4, betas=(0.5, 0.999), **(adam or {}))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    images = torch.Generator().manual_seed(1)

    def lsgan(score: torch.Tensor, target: float) -> torch.Tensor:
        return F.mse_loss(score.float(), torch.full_like(score.float(), target))

    def step() -> tuple[float, float]:
        real_A = (torch.rand(1, a_channels, size, size, generator=images) * 2 - 1).contiguous(memory_format=memory_format)
        real_B = (torch.rand(1, 1, size, size, generator=images) * 2 - 1).contiguous(memory_format=memory_format)
        if freeze_D:
            for p in D_params:
                p.requires_grad_(False)
        with autocast():
            if batched:
                fake_B, same_B = G_AB(torch.cat([real_A, match_channels(real_B, a_channels)])).chunk(2)
                fake_A, same_A = G_BA(torch.cat([real_B, match_channels(real_A, 1)])).chunk(2)
            else:
                fake_B, fake_A = G_AB(real_A), G_BA(real_B)
                same_B, same_A = G_AB(match_channels(real_B, a_channels)), G_BA(match_channels(real_A, 1))
            rec_A, rec_B = G_BA(fake_B), G_AB(fake_A)
            loss_G = (lsgan(D_B(fake_B), 1.0) + lsgan(D_A(fake_A), 1.0)
                      + 10 * (F.l1_loss(rec_A.float(), real_A) + F.l1_loss(rec_B.float(), real_B))
                      + 5 * (F.l1_loss(same_A.float(), real_A) + F.l1_loss(same_B.float(), real_B)))
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
        if freeze_D:
            for p in D_params:
                p.requires_grad_(True)
        with autocast():
            if batched:
                real_A_score, fake_A_score = D_A(torch.cat([real_A, fake_A.detach()])).chunk(2)
                real_B_score, fake_B_score = D_B(torch.cat([real_B, fake_B.detach()])).chunk(2)
            else:
                real_A_score, fake_A_score = D_A(real_A), D_A(fake_A.detach())
                real_B_score, fake_B_score = D_B(real_B), D_B(fake_B.detach())
            loss_D = 0.5 * (lsgan(real_A_score, 1.0) + lsgan(fake_A_score, 0.0)
                            + lsgan(real_B_score, 1.0) + lsgan(fake_B_score, 0.0))
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        return loss_G.item(), loss_D.item()

    if mkldnn_conv_precision is None:
        return step

    def step_with_conv_precision() -> tuple[float, float]:
        """oneDNN's precision for fp32 convolutions is process-wide: set it for this variant's step only."""
        torch.backends.mkldnn.conv.fp32_precision = mkldnn_conv_precision
        try:
            return step()
        finally:
            torch.backends.mkldnn.conv.fp32_precision = "none"

    return step_with_conv_precision


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per", type=int, default=1, help="steps of one variant before the next one's")
    parser.add_argument("--a-channels", type=int, default=3, choices=(1, 3))
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = build_networks(args.a_channels)
    steps = {}
    for name in args.variants:
        steps[name] = make_step(base, args.a_channels, **VARIANTS[name])
        steps[name]()  # warm-up: oneDNN primitives, allocator
    print(f"# load average {os.getloadavg()[0]:.1f} at the start")
    seconds = dict.fromkeys(steps, 0.0)
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.per):
                step()
            seconds[name] += time.perf_counter() - t0
    reference = args.variants[0]
    print(f"| variant | s/step | speed-up against {reference} |")
    print("| --- | --- | --- |")
    for name, total in seconds.items():
        print(f"| {name} | {total / (args.rounds * args.per):.3f} | {seconds[reference] / total:.2f}x |")
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
