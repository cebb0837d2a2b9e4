"""What a judge reads in translations: a FER classifier that had no part in training the
generator, applied to each translation and to its untranslated source.

The cyclegan stage judges its samples with it, the classify stage the translations it trains
on; the judge is any `predict_fn(images uint8 (N, H, W, C)) -> labels (N,)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fertransfer.data.images import conform

PredictFn = Callable[[np.ndarray], np.ndarray]


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


def judge_accuracy_at_size(
    predict_fn: PredictFn, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | list[str],
    seen_size: int, size: int, channels: int,
) -> dict:
    """The judge's accuracy on labelled faces brought through the generator's size first, as a
    translation is: on the person's own labelled crops, the label preservation a translation that
    looked exactly like the person's faces could reach (the yardstick for judge agreement)."""
    images = conform(conform(images, seen_size, channels), size, channels)
    return _rates(_predict(predict_fn, images, len(labels)) == labels, labels, class_names)
