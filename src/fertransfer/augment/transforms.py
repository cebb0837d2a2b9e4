"""Image transforms on uint8 (N, H, W, C) arrays: the two augmentations of the training sets.

`random_crop_flip` varies a FER source before it is translated again (the `balanced` set);
`classic_augment` is ordinary augmentation (the `classic` set), the baseline that the GAN
must beat. Both keep the input's shape so that the results can be stacked with the originals.
"""

from __future__ import annotations

import cv2
import numpy as np


def _resize_back(crop: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(height, width, channels)


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, min_scale: float = 0.8) -> np.ndarray:
    """Each image cropped to a random square of `min_scale`..1 of its side (resized back) and
    flipped left-right with probability 1/2."""
    n, height, width, channels = images.shape
    out = np.empty_like(images)
    for i in range(n):
        side = int(round(min(height, width) * rng.uniform(min_scale, 1.0)))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = images[i, top : top + side, left : left + side]
        image = _resize_back(crop, height, width, channels)
        out[i] = image[:, ::-1] if rng.random() < 0.5 else image
    return out


def classic_augment(
    images: np.ndarray,
    rng: np.random.Generator,
    min_scale: float = 0.85,
    max_degrees: float = 10.0,
    brightness: float = 0.15,
    contrast: float = 0.2,
) -> np.ndarray:
    """Ordinary augmentation: random flip, crop, small rotation, brightness and contrast.

    Brightness shifts by up to `brightness` of the full range; contrast scales the deviation
    from the image mean by 1 +- `contrast`.
    """
    n, height, width, channels = images.shape
    out = np.empty_like(images)
    for i in range(n):
        scale = rng.uniform(min_scale, 1.0)
        angle = rng.uniform(-max_degrees, max_degrees)
        # One affine warp: rotate about a random centre and zoom in by 1/scale (a crop).
        margin_y, margin_x = (1 - scale) * height / 2, (1 - scale) * width / 2
        centre = (width / 2 + rng.uniform(-margin_x, margin_x), height / 2 + rng.uniform(-margin_y, margin_y))
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0 / scale)
        matrix[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])
        image = cv2.warpAffine(images[i], matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        image = image.reshape(height, width, channels).astype(np.float32)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        factor = 1.0 + rng.uniform(-contrast, contrast)
        shift = rng.uniform(-brightness, brightness) * 255.0
        image = (image - image.mean()) * factor + image.mean() + shift
        out[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out
