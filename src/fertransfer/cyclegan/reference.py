"""Editing the person's own face (`model = "reference"`): F(b) starts from the person, not from b.

Every other model starts from the FER face and has to make it the person's, while the losses that
keep its expression (expression, PatchNCE, cycle) pull it back to the FER face; on MEAD they traded
person score for judge agreement along one edge (docs/results.md, "The person score and the
frontier"). This one starts at the other end. The generator keeps a bank of the person's own
training crops; for a FER face b it takes the crop whose coarse layout (gray, pooled to 8x8,
mean and contrast taken out: pose and lighting) is nearest b's, and learns a change of that crop,
reading b and the crop together, so that the result wears b's expression (the expression loss)
and still passes for the person (the adversarial loss: D_A against the person's crops). Untrained,
it is a nearest-neighbour retrieval from the person's footage; training buys expression with
distance from the person's real faces.

The bank is part of the generator's state (a uint8 buffer), so `Translator` and augment use it as
they use any generator. FER -> person only: the A -> B direction is the identity, as CUT's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .losses import generator_loss
from .models import ChannelMatch, ResidualGenerator, ResnetGenerator, build_discriminator, init_weights
from .parts import (
    adam,
    coarse_layout,
    descend,
    person_discriminator_step,
    set_requires_grad,
    source_losses,
    with_hybrids,
)
from .tensors import fine_detail, match_channels

LAYOUT_CELLS = 8  # the retrieval compares layouts of LAYOUT_CELLS x LAYOUT_CELLS cells


def reference_bank(person: np.ndarray, image_size: int, keep: int, seed: int) -> np.ndarray:
    """Centre crops (image_size) of the person's training images (N, load, load, C) uint8: `keep` of
    them, a seeded choice in their order, or all when keep is 0 or there are fewer."""
    if keep and len(person) > keep:
        person = person[np.sort(np.random.default_rng(seed).choice(len(person), keep, replace=False))]
    top = (person.shape[1] - image_size) // 2
    left = (person.shape[2] - image_size) // 2
    return np.ascontiguousarray(person[:, top:top + image_size, left:left + image_size])


def as_images(bank: torch.Tensor) -> torch.Tensor:
    """uint8 crops -> floats in [-1, 1], as the generators see images (tensors.to_tensor's scale)."""
    return bank.float() / 127.5 - 1.0


class ReferenceGenerator(nn.Module):
    """FER face (in_channels) -> the nearest of the person's crops, changed by a residual ResNet that
    reads the face and the crop together (out_channels). The change starts at zero. With `detail`,
    the crop's fine detail is first swapped for that share of the FER face's (`with_detail`)."""

    def __init__(self, in_channels: int, out_channels: int, ngf: int, image_size: int, bank: np.ndarray | None = None,
                 detail: float = 0.0, detail_sigma: float = 2.0):
        super().__init__()
        self.detail, self.detail_sigma = detail, detail_sigma
        self.scale = max(1, image_size // LAYOUT_CELLS)
        body = ResnetGenerator(in_channels + out_channels, out_channels, ngf, n_blocks=6, upsample="resize")
        self.edit = ResidualGenerator(init_weights(body), out_channels)
        if bank is None:  # loading a saved generator: the buffer takes the saved bank's size
            bank = np.zeros((1, image_size, image_size, out_channels), np.uint8)
        self.register_buffer("bank", torch.from_numpy(bank).permute(0, 3, 1, 2).contiguous())  # uint8 (K, C, S, S)
        self.register_buffer("bank_layout", self.layouts(as_images(self.bank)), persistent=False)  # derived: not saved

    def layouts(self, images: torch.Tensor) -> torch.Tensor:
        """(N, cells * cells) for images in [-1, 1]: what the retrieval compares."""
        return coarse_layout(images, self.scale).flatten(1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "bank")
        if saved is not None:  # a bank of another size than the placeholder's
            self.bank = torch.empty_like(saved, device=self.bank.device)
        state_dict.pop(prefix + "bank_layout", None)  # saved before it was derived on load (session 23's runs)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.bank_layout = self.layouts(as_images(self.bank))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """The index in the bank of the crop whose layout is nearest each image's."""
        return torch.cdist(self.layouts(x), self.bank_layout).argmin(dim=1)

    def references(self, x: torch.Tensor) -> torch.Tensor:
        """The bank's crops nearest x, as floats in [-1, 1]."""
        return as_images(self.bank[self.nearest(x)])

    def with_detail(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The crop with `detail` of its fine detail replaced by the FER face's: the face's expression
        lines drawn on the person's face and light (untrained, a hybrid image of the two)."""
        if not self.detail:
            return reference
        swap = fine_detail(match_channels(x, reference.shape[1]), self.detail_sigma) - fine_detail(reference, self.detail_sigma)
        return (reference + self.detail * swap).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reference = self.with_detail(x, self.references(x).to(x.dtype))
        return self.edit(torch.cat([x, reference], dim=1), base=reference)


class ReferenceEdit:
    """The training objective (the shape train.CycleGAN documents): adversarial on G_BA's edits of the
    person's crops, plus the expression and structure losses that tie them to their FER source;
    one discriminator, D_A, on the person; no image pool (as CUT)."""

    columns = ("G", "G_BA", "expression", "structure", "D_A")
    shown = ("G", "G_BA", "expression", "D_A")

    def __init__(self, cfg, expression, wrap: Callable[[nn.Module], nn.Module], person: np.ndarray):
        self.cfg, self.expression = cfg, expression
        a, b = cfg.a_channels, cfg.b_channels
        bank = reference_bank(person, cfg.image_size, cfg.reference_bank, cfg.seed)
        G = ReferenceGenerator(b, a, cfg.ngf, cfg.image_size, bank, cfg.reference_detail, cfg.reference_detail_sigma)
        D_A = build_discriminator(a, cfg.ndf, cfg.n_layers, cfg.diffaugment)
        self.nets = {"G_AB": ChannelMatch(b), "G_BA": G, "D_A": D_A}
        self.pools = {}
        self.generator = wrap(G)
        self.discriminator = wrap(D_A)

    def make_optimizers(self) -> None:
        cfg, n = self.cfg, self.nets
        self.optimizers = {
            "G": adam(cfg, n["G_BA"].parameters()),
            "D": adam(cfg, n["D_A"].parameters()),
        }

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor, rng: np.random.Generator, autocast) -> dict[str, torch.Tensor]:
        cfg, D_A = self.cfg, self.nets["D_A"]
        losses: dict[str, torch.Tensor] = {}
        set_requires_grad([D_A], False)
        with autocast():
            fake_A = self.generator(real_B).float()
            losses["G_BA"] = cfg.lambda_adversarial * generator_loss(cfg.gan_mode, D_A(fake_A))
            losses.update(source_losses(cfg, self.expression, fake_A, real_B))
            loss_G = losses["G"] = sum(losses.values())
        descend(self.optimizers["G"], loss_G)
        losses["D_A"] = person_discriminator_step(cfg, D_A, self.discriminator, self.optimizers["D"], real_A,
                                                  with_hybrids(cfg, fake_A.detach(), real_A, real_B, rng), autocast)
        return {k: v.detach() for k, v in losses.items()}
