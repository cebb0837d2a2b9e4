"""uint8 image arrays <-> generator tensors, gray <-> RGB on tensors, and their fine detail."""

from __future__ import annotations

import math

import numpy as np
import torch

# ITU-R 601 luma, the weights OpenCV uses for RGB -> gray (as the data loader does).
LUMA = (0.299, 0.587, 0.114)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] to `channels`: gray repeated to RGB, RGB to luma."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    raise ValueError(f"cannot convert {have} channel(s) to {channels}")


def to_tensor(images: np.ndarray, channels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, channels, H, W) in [-1, 1] on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return match_channels(x, channels).contiguous()


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def fine_detail(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each image minus its Gaussian blur: the lines and edges finer than `sigma` pixels."""
    from torchvision.transforms.v2.functional import gaussian_blur

    kernel = 2 * math.ceil(3 * sigma) + 1
    return images - gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def hybrids(person: torch.Tensor, sources: torch.Tensor, sigma: float) -> torch.Tensor:
    """The person's faces' Gaussian blur plus the sources' detail finer than `sigma` px, in the
    person's channels: two faces in one, which a score reading light and edges apart takes for a
    translation that reached the person and kept the expression (docs/results.md, session 24)."""
    sources = match_channels(sources, person.shape[1])
    return (person - fine_detail(person, sigma) + fine_detail(sources, sigma)).clamp(-1, 1)
