"""Translating labelled images through a generator given as a function, and checking the fit.

The generator is any `translate_fn(images uint8 (N, H, W, C)) -> uint8 (N, S, S, C')`; the
stage passes `fertransfer.cyclegan.translate.Translator.translate`, tests a stand-in. Nothing
here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fertransfer.errors import StageError
from fertransfer.progress import progress as progress_bar

from .transforms import conform

TranslateFn = Callable[[np.ndarray], np.ndarray]
PredictFn = Callable[[np.ndarray], np.ndarray]

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


def _rates(hits: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict:
    """Share of hits overall and per true class (None for a class without images)."""
    per_class = {}
    for label, name in enumerate(class_names):
        mask = labels == label
        per_class[name] = round(float(hits[mask].mean()), 4) if mask.any() else None
    return {"overall": round(float(hits.mean()), 4) if len(hits) else None, "per_class": per_class,
            "images": int(len(labels))}


def _predict(predict_fn: PredictFn, images: np.ndarray, count: int) -> np.ndarray:
    predicted = np.asarray(predict_fn(images)).astype(np.int64).reshape(-1)
    if predicted.shape != (count,):
        raise ValueError(f"predict_fn returned {predicted.shape[0]} labels for {count} images")
    return predicted


def judge_translations(
    predict_fn: PredictFn, translated: np.ndarray, sources: np.ndarray, labels: np.ndarray,
    class_names: tuple[str, ...] | list[str],
) -> dict:
    """What a judge (a classifier trained on real FER, never the one in the generator's loss)
    reads in translations, per class and overall:

    - label_preservation: its label on the translation is the source's true label;
    - judge_agreement: its label on the translation is its own label on the untranslated
      source, i.e. the translation kept what the judge can see, whatever FER's label noise;
    - source_accuracy: its accuracy on the untranslated sources, the ceiling of the first.
    """
    on_translated = _predict(predict_fn, translated, len(labels))
    on_sources = _predict(predict_fn, sources, len(labels))
    return {
        "images": int(len(labels)),
        "label_preservation": _rates(on_translated == labels, labels, class_names),
        "judge_agreement": _rates(on_translated == on_sources, labels, class_names),
        "source_accuracy": _rates(on_sources == labels, labels, class_names),
    }


def judge_at_judge_size(
    predict_fn: PredictFn, translated: np.ndarray, sources: np.ndarray, labels: np.ndarray,
    class_names: tuple[str, ...] | list[str], size: int, channels: int,
) -> dict:
    """judge_translations with each source first brought to the size the generator saw it at, and
    both then through the same resize to the judge's input (`size`, `channels`): the figures
    measure what the translation changed, not the resolution."""
    sources = conform(conform(sources, translated.shape[1], channels), size, channels)
    return judge_translations(predict_fn, conform(translated, size, channels), sources, labels, class_names)
