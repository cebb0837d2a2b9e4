"""Contrastive unpaired translation (Park et al. 2020, "Contrastive Learning for Unpaired
Image-to-Image Translation"): `model = "cut"` and `"fastcut"`.

One generator, FER -> person, and no way back: instead of a cycle, each patch of the translation
must be recognisable as the patch of the source it came from. Both go through the generator's own
encoder (the first layers of the ResNet generator); a small MLP per layer maps the features at
`nce_patches` random positions to unit vectors, and an InfoNCE loss asks each output patch to pick
its own input patch among the others of the same image (PatchNCE). The mouth stays a mouth where
it was, while the adversarial loss is free to change what is not tied to a place, the look of the
face. CUT also applies PatchNCE to the person's own faces run through the generator (an identity
term, which keeps it from changing what is already the person's); FastCUT drops it and weighs
PatchNCE 10x, as the paper does.

The A -> B direction the stage's samples, SWD and checkpoints expect is the identity here
(`models.ChannelMatch`): augment only ever uses FER -> person.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .losses import generator_loss
from .models import ChannelMatch, ResidualGenerator, build_discriminator, build_generator
from .parts import adam, descend, person_discriminator_step, set_requires_grad, source_losses, with_hybrids
from .tensors import match_channels

# Layers of the ResNet generator's Sequential whose outputs PatchNCE compares: the padded input
# pixels, the first and second downsampling convolutions and two of the residual blocks (the
# paper's 0, 4, 8, 12, 16 on resnet_9blocks; 14 is the fifth of resnet_6blocks' six).
NCE_LAYERS = (0, 4, 8, 12, 14)


def encoder_layers(generator: nn.Module) -> nn.Sequential:
    """The layers a ResNet generator (or its residual twin's body) runs its input through."""
    return generator.body.model if isinstance(generator, ResidualGenerator) else generator.model


def encode(generator: nn.Module, x: torch.Tensor, layers: tuple[int, ...] = NCE_LAYERS) -> list[torch.Tensor]:
    """The outputs of `layers` for input x (the generator's input channels), stopping after the last."""
    features, h = [], x
    for i, layer in enumerate(encoder_layers(generator)):
        h = layer(h)
        if i in layers:
            features.append(h)
        if i == layers[-1]:
            break
    return features


class PatchHeads(nn.Module):
    """One MLP (linear, ReLU, linear to 256, then L2-normalised) per compared layer, and PatchNCE."""

    def __init__(self, channels: list[int], width: int = 256):
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(True), nn.Linear(width, width))
                                  for c in channels)

    def forward(self, queries: list[torch.Tensor], keys: list[torch.Tensor], patches: int,
                temperature: float) -> torch.Tensor:
        """Mean over layers of InfoNCE: each output patch against every sampled input patch of its image,
        its own the positive. Keys carry no gradient (as in the paper). In fp32 under autocast."""
        total = 0.0
        with torch.autocast(queries[0].device.type, enabled=False):
            for mlp, q, k in zip(self.mlps, queries, keys):
                n, c, h, w = q.shape
                ids = torch.randperm(h * w, device=q.device)[: min(patches, h * w)]
                pick = lambda f: f.float().flatten(2).transpose(1, 2)[:, ids]  # noqa: E731  (N, P, C)
                q_vec = F.normalize(mlp(pick(q)), dim=-1)
                k_vec = F.normalize(mlp(pick(k.detach())), dim=-1)
                logits = q_vec @ k_vec.transpose(1, 2) / temperature  # (N, P, P): the diagonal is the positive
                target = torch.arange(logits.shape[1], device=q.device).expand(n, -1)
                total = total + F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return total / len(self.mlps)


class Contrast(nn.Module):
    """The generator side of one step in one forward (one call for DDP): F(b), and PatchNCE between
    b and F(b) (with `identity`: also between the person's faces a and F(a))."""

    def __init__(self, generator: nn.Module, heads: PatchHeads, b_channels: int, identity: bool,
                 patches: int, temperature: float):
        super().__init__()
        self.generator, self.heads, self.identity = generator, heads, identity
        self.b_channels, self.patches, self.temperature = b_channels, patches, temperature

    def nce(self, source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
        as_input = match_channels(translated, self.b_channels)
        return self.heads(encode(self.generator, as_input), encode(self.generator, source), self.patches, self.temperature)

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.identity:
            person = match_channels(real_A, self.b_channels)
            fake_A, same_A = self.generator(torch.cat([real_B, person])).float().chunk(2)
            return {"fake_A": fake_A, "nce": self.nce(real_B, fake_A), "nce_same": self.nce(person, same_A)}
        fake_A = self.generator(real_B).float()
        return {"fake_A": fake_A, "nce": self.nce(real_B, fake_A)}


class ContrastiveTranslation:
    """The training objective (the shape train.CycleGAN documents): adversarial + PatchNCE on G_BA,
    one discriminator D_A on the person; no image pool (as in the paper)."""

    columns = ("G", "G_BA", "nce", "nce_same", "expression", "structure", "D_A")
    shown = ("G", "G_BA", "nce", "D_A")

    def __init__(self, cfg, expression, wrap: Callable[[nn.Module], nn.Module]):
        self.cfg, self.expression = cfg, expression
        a, b = cfg.a_channels, cfg.b_channels
        self.identity = cfg.model == "cut"
        self.lambda_nce = cfg.lambda_nce if cfg.lambda_nce is not None else (1.0 if self.identity else 10.0)
        G = build_generator(cfg.generator, b, a, cfg.ngf, cfg.image_size)
        with torch.no_grad():
            channels = [f.shape[1] for f in encode(G, torch.zeros(1, b, cfg.image_size, cfg.image_size))]
        heads = PatchHeads(channels)
        D_A = build_discriminator(a, cfg.ndf, cfg.n_layers, cfg.diffaugment)
        self.nets = {"G_AB": ChannelMatch(b), "G_BA": G, "F": heads, "D_A": D_A}
        self.pools = {}
        self.contrast = wrap(Contrast(G, heads, b, self.identity, cfg.nce_patches, cfg.nce_temperature))
        self.discriminator = wrap(D_A)

    def make_optimizers(self) -> None:
        cfg, n = self.cfg, self.nets
        self.optimizers = {
            "G": adam(cfg, [*n["G_BA"].parameters(), *n["F"].parameters()]),
            "D": adam(cfg, n["D_A"].parameters()),
        }

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor, rng: np.random.Generator, autocast) -> dict[str, torch.Tensor]:
        cfg, D_A = self.cfg, self.nets["D_A"]
        losses: dict[str, torch.Tensor] = {}
        set_requires_grad([D_A], False)
        with autocast():
            out = self.contrast(real_A, real_B)
            losses["G_BA"] = cfg.lambda_adversarial * generator_loss(cfg.gan_mode, D_A(out["fake_A"]))
            nce = (out["nce"] + out["nce_same"]) / 2 if self.identity else out["nce"]
            losses["nce"] = self.lambda_nce * nce
            losses.update(source_losses(cfg, self.expression, out["fake_A"], real_B))
            loss_G = losses["G"] = sum(losses.values())
        descend(self.optimizers["G"], loss_G)
        if self.identity:
            losses["nce_same"] = out["nce_same"]

        fake_A = with_hybrids(cfg, out["fake_A"].detach(), real_A, real_B, rng)
        losses["D_A"] = person_discriminator_step(cfg, D_A, self.discriminator, self.optimizers["D"], real_A, fake_A,
                                                  autocast)
        return {k: v.detach() for k, v in losses.items()}
