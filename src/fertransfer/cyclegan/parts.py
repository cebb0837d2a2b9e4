"""What the training objectives share (train.CycleGAN, autoencoder.SharedAutoencoder,
cut.ContrastiveTranslation): the pool of past fakes, the losses that tie a translation to its
FER source, and the one-discriminator update. Below the objectives, so none imports another."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .expression import ExpressionConsistency
from .losses import discriminator_loss, gradient_penalty, r1_penalty
from .tensors import hybrids, match_channels

HYBRID_SIGMAS = (1.0, 2.0)  # `hybrid_fakes`: the detail scales (px) of the hybrids D_A is shown, one drawn per step


class ImagePool:
    """Shrivastava et al.'s history of fakes: D sees a mix of current and past generator output."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif rng.random() > 0.5:
                i = int(rng.integers(self.size))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> list[torch.Tensor]:
        return [im.cpu() for im in self.images]

    def load_state_dict(self, images: list[torch.Tensor], device: torch.device) -> None:
        self.images = [im.to(device) for im in images]


def structure_distance(translated: torch.Tensor, source: torch.Tensor, scale: int, crop: float = 1.0) -> torch.Tensor:
    """L1 between coarse gray layouts (average-pooled by `scale`): where a face is light or dark
    (an open mouth, raised brows) survives the translation, while texture, identity and fine
    detail are the generator's to change. Mean and contrast are taken out per image, so the
    person's skin tone and lighting are not held to the FER face's. With `crop` < 1 only the
    centred part is compared: on aligned faces the inner face carries the expression, while
    hair, outline and background carry much of who it is."""
    return F.l1_loss(coarse_layout(translated, scale, crop), coarse_layout(source, scale, crop))


def coarse_layout(x: torch.Tensor, scale: int, crop: float = 1.0) -> torch.Tensor:
    """Each image's gray, centre-cropped to `crop`, average-pooled by `scale`, with its mean and
    contrast taken out: where the face is light and dark, not how light it is."""
    x = F.avg_pool2d(centre_crop(match_channels(x.float(), 1), crop), scale)
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return x / (x.std(dim=(1, 2, 3), keepdim=True) + 0.01)


def centre_crop(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """The centred `fraction` of each image's height and width (at least one pixel)."""
    height, width = x.shape[-2:]
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - h) // 2, (width - w) // 2
    return x[..., top:top + h, left:left + w]


def adam(cfg, params) -> torch.optim.Adam:
    """The recipe's optimiser, for every objective: Adam(lr, betas (beta1, 0.999))."""
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on `loss` (gradients cleared first): every update of every objective."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def source_losses(cfg, expression: ExpressionConsistency | None, translated: torch.Tensor,
                  source: torch.Tensor) -> dict[str, torch.Tensor]:
    """The losses that tie a FER face's translation to its source, whatever the model: its expression
    as a frozen FER classifier reads it, and its coarse layout of light and dark (each when on)."""
    losses = {}
    if cfg.lambda_expression > 0:  # F(b) must show b's expression to a classifier that reads FER faces
        losses["expression"] = cfg.lambda_expression * expression(translated, source, cfg.expression_jitter)
    if cfg.lambda_structure > 0:  # ... and keep b's coarse layout of light and dark (mouth, brows, eyes)
        losses["structure"] = cfg.lambda_structure * structure_distance(translated, source, cfg.structure_scale,
                                                                        cfg.structure_crop)
    return losses


def with_hybrids(cfg, fake_A: torch.Tensor, real_A: torch.Tensor, real_B: torch.Tensor,
                 rng: np.random.Generator) -> torch.Tensor:
    """D_A's fakes; with `hybrid_fakes`, followed by one hybrid per person crop of the step (its blur
    plus the FER source's fine lines): an image that is not a translation must not pass for the person."""
    if not cfg.hybrid_fakes:
        return fake_A
    sigma = HYBRID_SIGMAS[int(rng.integers(len(HYBRID_SIGMAS)))]
    return torch.cat([fake_A, hybrids(real_A.float(), real_B.float(), sigma).to(fake_A.dtype)])


def person_discriminator_step(cfg, D_A: nn.Module, scorer: nn.Module, optimizer: torch.optim.Optimizer,
                              real_A: torch.Tensor, fake_A: torch.Tensor, autocast) -> torch.Tensor:
    """One update of the one discriminator of the single-direction models (autoencoder, CUT,
    reference): the person's real faces against translations of FER faces (and hybrids, see
    `with_hybrids`). `scorer` is D_A as the step calls it (DDP-wrapped or compiled); the gradient
    penalty uses the raw D_A, as CycleGAN's does."""
    set_requires_grad([D_A], True)
    with autocast():
        real_score, fake_score = scorer(torch.cat([real_A, fake_A])).split([len(real_A), len(fake_A)])
        loss_D = discriminator_loss(cfg.gan_mode, real_score.float(), fake_score.float())
    if cfg.gan_mode == "wgangp":
        loss_D = loss_D + gradient_penalty(D_A, real_A, fake_A[: len(real_A)], cfg.lambda_gp)
    penalty = r1_penalty(D_A, real_A, cfg.lambda_r1) if cfg.lambda_r1 else 0  # not in the logged loss
    descend(optimizer, loss_D + penalty)
    return loss_D
