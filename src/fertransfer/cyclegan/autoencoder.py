"""A shared-encoder autoencoder with one decoder per domain: the face-swap design (`model = "autoencoder"`).

One encoder reads faces of both domains down to a small code; decoder_A draws the person from a
code, decoder_B a FER face. Each decoder learns to rebuild its own domain from the code of a randomly
warped copy of its input (the deepfakes/faceswap "Original" model, smaller). The code is too small
to carry every pixel, and it is shared: what both domains have in common, pose and expression, goes
through it; what makes a face the person's goes into decoder_A, which has only ever drawn the
person. FER -> person is then decoder_A(encoder(b)).

The warps matter as much as the bottleneck: rebuilding the unwarped face from a warped one teaches
the encoder shapes (where the mouth and brows are) rather than pixels. The encoder reads gray, so
that colour (the person's footage is RGB, FER gray) tells it nothing about the domain. Optional
extras, each to pull F(b) onto the person's face and keep the source's expression: a PatchGAN on
decoder_A's translations (`lambda_adversarial`), the expression and structure losses of the stage
(`lambda_expression`, `lambda_structure`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .losses import generator_loss
from .models import build_discriminator
from .parts import ImagePool, adam, descend, person_discriminator_step, set_requires_grad, source_losses, with_hybrids
from .tensors import match_channels


def upscale(in_channels: int, out_channels: int) -> nn.Sequential:
    """x2 by nearest-neighbour resize and a 3x3 convolution (no transposed convolution's checkerboard)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, padding=1),
                         nn.LeakyReLU(0.1, True))


class Encoder(nn.Module):
    """Gray face -> a `bottleneck`-sized code -> a (4 ngf, size/8, size/8) map that both decoders read.

    Four stride-2 5x5 convolutions (ngf .. 8 ngf channels) down to size/16, a linear layer to the
    code and one back, then one upscale: the deepfakes encoder with its dense bottleneck."""

    def __init__(self, image_size: int, ngf: int, bottleneck: int):
        super().__init__()
        if image_size % 16 or image_size < 16:
            raise ValueError(f"the autoencoder needs an image size that is a multiple of 16, got {image_size}")
        layers: list[nn.Module] = []
        channels = 1
        for i in range(4):
            layers += [nn.Conv2d(channels, ngf * 2**i, 5, stride=2, padding=2), nn.LeakyReLU(0.1, True)]
            channels = ngf * 2**i
        self.down = nn.Sequential(*layers)
        self.base = image_size // 16
        flat = channels * self.base**2
        self.code = nn.Linear(flat, bottleneck)
        self.expand = nn.Linear(bottleneck, flat)
        self.up = upscale(channels, channels // 2)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.code(self.down(match_channels(x, 1)).flatten(1))
        return self.up(self.expand(z).view(-1, self.channels, self.base, self.base))


class Decoder(nn.Module):
    """The encoder's (4 ngf, size/8) map -> an image of one domain: three upscales, a 5x5 convolution, tanh."""

    def __init__(self, ngf: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(upscale(4 * ngf, 2 * ngf), upscale(2 * ngf, ngf), upscale(ngf, ngf),
                                   nn.Conv2d(ngf, out_channels, 5, padding=2), nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.model(h)


class Translation(nn.Module):
    """The shared encoder and one domain's decoder: a translation into that domain (G_AB, G_BA)."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build_networks(image_size: int, ngf: int, bottleneck: int, a_channels: int, b_channels: int) -> dict[str, nn.Module]:
    """G_AB = decoder_B . encoder, G_BA = decoder_A . encoder, sharing one encoder (checkpoints
    store both; the shared tensors load twice, to the same values). PyTorch's default (He-uniform)
    initialisation: with no normalisation layers, the GAN's N(0, 0.02) shrinks the signal ~5x per layer
    and the untrained autoencoder does not learn."""
    encoder = Encoder(image_size, ngf, bottleneck)
    decoder_a, decoder_b = Decoder(ngf, a_channels), Decoder(ngf, b_channels)
    return {"G_AB": Translation(encoder, decoder_b), "G_BA": Translation(encoder, decoder_a)}


def random_warp(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Each image rotated, scaled and shifted a little and bent by a smooth random field (a 5x5 grid of
    displacements, bicubically interpolated), all of size ~`strength` of the image. Uses torch's RNG
    (kept in checkpoints), so resumed runs draw the same warps."""
    if strength <= 0:
        return x
    n = x.shape[0]
    u = (torch.rand(n, 4, device=x.device) * 2 - 1) * strength
    angle, scale = u[:, 0] * math.pi, 1 + u[:, 1]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2]], 1), torch.stack([sin, cos, u[:, 3]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    field = torch.randn(n, 2, 5, 5, device=x.device) * strength
    field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(x.float(), grid + field, mode="bilinear", padding_mode="reflection", align_corners=False)


class Autoencode(nn.Module):
    """The generator side of one step in one forward (one call for DDP): both domains' reconstructions
    from warped inputs, and F(b) = decoder_A(encoder(b)) from the unwarped FER face."""

    def __init__(self, G_AB: Translation, G_BA: Translation):
        super().__init__()
        self.encoder, self.decoder_A, self.decoder_B = G_BA.encoder, G_BA.decoder, G_AB.decoder

    def forward(self, warped_A: torch.Tensor, warped_B: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(warped_A)
        codes = self.encoder(torch.cat([match_channels(warped_A, 1), match_channels(warped_B, 1), match_channels(real_B, 1)]))
        code_A, code_B, code_real_B = codes[:n], codes[n : 2 * n], codes[2 * n :]
        rec_A, fake_A = self.decoder_A(torch.cat([code_A, code_real_B])).chunk(2)
        rec_B = self.decoder_B(code_B)
        return {"rec_A": rec_A.float(), "rec_B": rec_B.float(), "fake_A": fake_A.float()}


class SharedAutoencoder:
    """The training objective (the shape train.CycleGAN documents): reconstruction L1 of both domains
    (+ adversarial, expression, structure losses on F(b)), one discriminator, D_A, on the person."""

    columns = ("G", "rec_A", "rec_B", "G_BA", "expression", "structure", "D_A")
    shown = ("G", "rec_A", "rec_B", "G_BA", "D_A")

    def __init__(self, cfg, expression, wrap: Callable[[nn.Module], nn.Module]):
        self.cfg, self.expression = cfg, expression
        networks = build_networks(cfg.image_size, cfg.ngf, cfg.bottleneck, cfg.a_channels, cfg.b_channels)
        D_A = build_discriminator(cfg.a_channels, cfg.ndf, cfg.n_layers, cfg.diffaugment)
        self.nets = {**networks, "D_A": D_A}
        self.pools = {"pool_A": ImagePool(cfg.pool_size)}
        self.adversarial = cfg.lambda_adversarial > 0
        self.autoencode = wrap(Autoencode(networks["G_AB"], networks["G_BA"]))
        self.discriminator = wrap(D_A) if self.adversarial else D_A

    def make_optimizers(self) -> None:
        cfg = self.cfg
        generator_params = {id(p): p for name in ("G_AB", "G_BA") for p in self.nets[name].parameters()}  # encoder once
        self.optimizers = {"G": adam(cfg, list(generator_params.values()))}
        if self.adversarial:
            self.optimizers["D"] = adam(cfg, self.nets["D_A"].parameters())

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor, rng: np.random.Generator, autocast) -> dict[str, torch.Tensor]:
        cfg, D_A = self.cfg, self.nets["D_A"]
        losses: dict[str, torch.Tensor] = {}
        warped_A, warped_B = random_warp(real_A, cfg.warp), random_warp(real_B, cfg.warp)
        set_requires_grad([D_A], False)
        with autocast():
            out = self.autoencode(warped_A, warped_B, real_B)
            losses["rec_A"] = cfg.lambda_reconstruction * F.l1_loss(out["rec_A"], real_A)
            losses["rec_B"] = cfg.lambda_reconstruction * F.l1_loss(out["rec_B"], real_B)
            if self.adversarial:
                losses["G_BA"] = cfg.lambda_adversarial * generator_loss(cfg.gan_mode, D_A(out["fake_A"]))
            losses.update(source_losses(cfg, self.expression, out["fake_A"], real_B))
            loss_G = losses["G"] = sum(losses.values())
        descend(self.optimizers["G"], loss_G)

        if self.adversarial:  # D_A: the person's real faces against (pooled) translations of FER faces
            fake_A = with_hybrids(cfg, self.pools["pool_A"].query(out["fake_A"].detach().float(), rng), real_A, real_B, rng)
            losses["D_A"] = person_discriminator_step(cfg, D_A, self.discriminator, self.optimizers["D"], real_A, fake_A,
                                                      autocast)
        return {k: v.detach() for k, v in losses.items()}
