"""Translating images with a trained generator: the API other stages use.

    from fertransfer.cyclegan.translate import Translator
    t = Translator.from_checkpoint("run/cyclegan/checkpoints/latest.pt", direction="BtoA")
    faces = t.translate(fer_images)  # uint8 (N, H, W, C) in, (N, size, size, out_channels) out

Inputs of any size and channel count are converted (gray <-> RGB, centre crop + resize to
the generator's image size) before translation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fertransfer.devices import resolve_device
from fertransfer.progress import progress as progress_bar

from .autoencoder import build_networks
from .checkpoint import CheckpointError, load_checkpoint
from .models import ChannelMatch, build_generator
from .reference import ReferenceGenerator
from .tensors import from_tensor, to_tensor

DIRECTIONS = ("AtoB", "BtoA")


def build_translation(config: dict, direction: str) -> torch.nn.Module:
    """The network of a checkpoint's G_AB (direction "AtoB") or G_BA ("BtoA"), from its recorded config."""
    a, b = config["a_channels"], config["b_channels"]
    in_channels, out_channels = (a, b) if direction == "AtoB" else (b, a)
    model = config.get("model", "cyclegan")
    if model == "autoencoder":
        networks = build_networks(config["image_size"], config["ngf"], config["bottleneck"], a, b)
        return networks["G_AB"] if direction == "AtoB" else networks["G_BA"]
    if model in ("cut", "fastcut", "reference") and direction == "AtoB":
        return ChannelMatch(out_channels)
    if model == "reference":  # the bank of the person's crops comes with the saved state
        return ReferenceGenerator(in_channels, out_channels, config["ngf"], config["image_size"],
                                  detail=config.get("reference_detail", 0.0),
                                  detail_sigma=config.get("reference_detail_sigma", 2.0))
    return build_generator(config["generator"], in_channels, out_channels, config["ngf"], config["image_size"])


class Translator:
    """One generator of a CycleGAN checkpoint, in eval mode, translating uint8 arrays."""

    def __init__(self, generator: torch.nn.Module, image_size: int, in_channels: int, out_channels: int,
                 direction: str, device: torch.device, step: int | None = None):
        self.generator = generator.eval()
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.direction = direction
        self.device = device
        self.step = step

    @classmethod
    def from_checkpoint(cls, path: str | Path, direction: str = "BtoA", device: str = "auto") -> Translator:
        """Load G_AB (AtoB) or G_BA (BtoA) from latest.pt or any step_*.pt checkpoint."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        torch_device = resolve_device(device)
        state = load_checkpoint(Path(path), map_location="cpu")
        config = state["config"]
        a, b = config["a_channels"], config["b_channels"]
        in_channels, out_channels = (a, b) if direction == "AtoB" else (b, a)
        name = "G_AB" if direction == "AtoB" else "G_BA"
        generator = build_translation(config, direction)
        try:
            generator.load_state_dict(state["models"][name])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{path}: {name} does not fit its recorded config ({str(error).splitlines()[0]})") from None
        return cls(generator.to(torch_device), config["image_size"], in_channels, out_channels, direction,
                   torch_device, int(state["step"]))

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Bring (N, H, W[, C]) uint8 images to (N, image_size, image_size, in_channels)."""
        from fertransfer.data.images import fit_square, to_channels

        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
        size, channels = self.image_size, self.in_channels
        if images.shape[1:] == (size, size, channels):
            return images
        out = np.empty((len(images), size, size, channels), np.uint8)
        for i, image in enumerate(images):
            out[i] = fit_square(to_channels(image, channels), size).reshape(size, size, channels)
        return out

    @torch.no_grad()
    def translate(self, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """uint8 (N, H, W, C) -> uint8 (N, image_size, image_size, out_channels)."""
        images = self.prepare(images)
        out = np.empty((len(images), self.image_size, self.image_size, self.out_channels), np.uint8)
        use_bf16 = self.device.type == "cuda"
        for start in progress_bar(range(0, len(images), batch_size), desc=f"translate {self.direction}",
                                  unit="batch", disable=not progress):
            x = to_tensor(images[start : start + batch_size], self.in_channels, self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                y = self.generator(x)
            out[start : start + len(x)] = from_tensor(y)
        return out
