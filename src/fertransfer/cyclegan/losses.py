"""GAN objectives: least squares (the CycleGAN default), vanilla, hinge and WGAN-GP.

Each is written as two functions of the discriminator's raw outputs, one for the
discriminator (real and fake scores) and one for the generator (fake scores only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")


def discriminator_loss(mode: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Loss for D given its scores on real and on (pooled, detached) fake images."""
    if mode == "lsgan":
        return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
    if mode == "vanilla":
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if mode == "wgangp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown gan mode '{mode}'; choose one of {', '.join(GAN_MODES)}")


def generator_loss(mode: str, fake: torch.Tensor) -> torch.Tensor:
    """Adversarial loss for G given D's scores on its fakes."""
    if mode == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if mode in ("hinge", "wgangp"):
        return -fake.mean()
    raise ValueError(f"unknown gan mode '{mode}'; choose one of {', '.join(GAN_MODES)}")


def r1_penalty(discriminator, real: torch.Tensor, weight: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): weight/2 * ||grad D(x)||^2 at real images x, in float32 (a
    gradient of a gradient); zero gradient at the data is where a discriminator stops pushing."""
    real = real.detach().float().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).float().sum(), real, create_graph=True)
    return 0.5 * weight * grad.flatten(1).pow(2).sum(1).mean()


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x)|| - 1)^2 on random interpolates."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = discriminator(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return weight * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
