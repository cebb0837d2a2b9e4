"""Translating labelled images through a generator given as a function, and checking the fit.

The generator is any `translate_fn(images uint8 (N, H, W, C)) -> uint8 (N, S, S, C')`; the
stage passes `fertransfer.cyclegan.translate.Translator.translate`, tests a stand-in. Nothing
here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fertransfer.data.images import conform
from fertransfer.errors import StageError
from fertransfer.progress import progress as progress_bar

TranslateFn = Callable[[np.ndarray], np.ndarray]

# Images are resized to the generator's size; beyond this factor they do not fit it.
MAX_RESIZE_FACTOR = 4.0


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator takes and gives: square images of `image_size` px."""

    image_size: int
    in_channels: int
    out_channels: int
    name: str = "generator"  # for messages: the checkpoint path and direction

    @classmethod
    def of(cls, translator, name: str = "") -> GeneratorSpec:
        """From anything with image_size / in_channels / out_channels (the cyclegan Translator)."""
        return cls(translator.image_size, translator.in_channels, translator.out_channels, name or "generator")


def is_gray(images: np.ndarray) -> bool:
    """True when images have one channel, or three equal ones."""
    if images.shape[-1] == 1:
        return True
    return bool((images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all())


def check_generator_fits(spec: GeneratorSpec, images: np.ndarray, data_name: str) -> None:
    """Refuse a generator whose input channels or size do not fit the data, naming both.

    Gray data needs a 1-channel generator input and colour data a 3-channel one (a mismatch
    usually means the wrong checkpoint or direction); the data's side must be within
    MAX_RESIZE_FACTOR of the generator's size.
    """
    if spec.in_channels not in (1, 3) or spec.out_channels not in (1, 3):
        raise StageError(
            f"{spec.name}: takes {spec.in_channels} and gives {spec.out_channels} channels; only 1 or 3 are supported"
        )
    data_channels = 1 if is_gray(images) else 3
    side = min(images.shape[1:3])
    what = f"{data_name} holds {'gray' if data_channels == 1 else 'RGB'} {images.shape[2]}x{images.shape[1]} images"
    generator = f"{spec.name} takes {spec.in_channels}-channel {spec.image_size}x{spec.image_size} input"
    if data_channels != spec.in_channels:
        raise StageError(f"generator does not fit the data: {generator}, but {what}")
    factor = max(side / spec.image_size, spec.image_size / side)
    if factor > MAX_RESIZE_FACTOR:
        raise StageError(
            f"generator does not fit the data: {generator}, but {what} "
            f"(a resize by {factor:.1f}x; at most {MAX_RESIZE_FACTOR:g}x)"
        )


def translate_images(
    images: np.ndarray,
    translate_fn: TranslateFn,
    spec: GeneratorSpec,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "translating",
) -> np.ndarray:
    """Translate images of any size/channels (converted to the generator's input) in batches.

    Returns uint8 (N, image_size, image_size, out_channels); raises StageError when the
    generator returns anything else.
    """
    expected = (spec.image_size, spec.image_size, spec.out_channels)
    out = np.empty((len(images), *expected), np.uint8)
    starts = range(0, len(images), batch_size)
    for start in progress_bar(starts, desc=desc, unit="batch", disable=not progress or len(images) == 0):
        batch = conform(images[start : start + batch_size], spec.image_size, spec.in_channels)
        result = np.asarray(translate_fn(batch))
        if result.dtype != np.uint8 or result.shape != (len(batch), *expected):
            raise StageError(
                f"{spec.name}: returned {result.dtype} {tuple(result.shape)} for {len(batch)} images, "
                f"expected uint8 {(len(batch), *expected)}"
            )
        out[start : start + len(batch)] = result
    return out
