"""Differentiable augmentation of everything a discriminator sees (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"): `[cyclegan] diffaugment`.

A person's footage gives a few hundred crops. A discriminator that sees them unchanged learns them
by heart and wins outright: on W009, CUT's discriminator loss fell from 0.23 to 0.01 over an hour,
its verdict stopped guiding the generator, and PatchNCE and the expression loss pulled the
translation back to the identity (SWD from -26% at 3,500 steps to -1% at 7,000). Here every image a
discriminator scores, real or generated, in its own update and in the generator's, is first moved,
cut and recoloured at random, per image; the transforms are differentiable, so the generator is
still taught through them, and since reals and fakes go through the same ones the generator gains
nothing by drawing them. Randomness comes from torch's generator, so exact resume keeps it.

`color` is not for every pair of domains: much of what tells a person's crops from FER faces is tone
and contrast, and a discriminator that sees both at random brightness and contrast cannot use it. On
W009 the paper's three transforms left CUT's generator where it started (person score 0.000, SWD
-1% after 2,017 steps: docs/results.md); translation and cutout alone leave tone visible.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("color", "translation", "cutout")


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness (+-0.5), saturation (x0-2, colour images only) and contrast (x0.5-1.5), per image."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """A shift of up to `ratio` of the size in each direction, whole pixels, zeros filling in."""
    n, _, h, w = x.shape
    limit_y, limit_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-limit_y, limit_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-limit_x, limit_x + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - shift_y  # where each output pixel comes from
    cols = torch.arange(w, device=x.device).view(1, 1, w) - shift_x
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).flatten(1)  # (n, h*w)
    moved = x.flatten(2).gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)
    return moved * inside.to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """A square of `ratio` of the size, at a random place per image, set to zero."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + 1 - size_y % 2, (n, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + 1 - size_x % 2, (n, 1, 1), device=x.device) - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~hole).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """x through each transform of `policy`, in the paper's order (color, translation, cutout)."""
    for name in AUGMENTATIONS:
        if name in policy:
            x = TRANSFORMS[name](x)
    return x
