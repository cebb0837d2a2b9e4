"""Helpers for other stages' tests: a valid, untrained, tiny CycleGAN checkpoint in milliseconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .checkpoint import FORMAT, VERSION, atomic_save
from .models import build_generator
from .train import TrainConfig


def tiny_checkpoint(path: str | Path, image_size: int = 32, a_channels: int = 3, b_channels: int = 1,
                    ngf: int = 4, generator: str = "resnet_6blocks", seed: int = 0) -> Path:
    """Write a generators-only checkpoint (like checkpoints/latest.pt) that Translator loads."""
    torch.manual_seed(seed)
    cfg = TrainConfig(image_size=image_size, load_size=image_size, a_channels=a_channels, b_channels=b_channels,
                      generator=generator, ngf=ngf, ndf=ngf, steps=0)
    models = {
        "G_AB": build_generator(generator, a_channels, b_channels, ngf, image_size).state_dict(),
        "G_BA": build_generator(generator, b_channels, a_channels, ngf, image_size).state_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"format": FORMAT, "version": VERSION, "step": 0,
                 "config": dataclasses.asdict(cfg), "models": models}, path)
    return path
