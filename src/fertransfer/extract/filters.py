"""Quality filters for face crops: blur and near-duplicates."""

from __future__ import annotations

import cv2
import numpy as np


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the gray crop: low for blurred faces."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def perceptual_hash(crop: np.ndarray) -> np.uint64:
    """64-bit DCT hash: signs of the lowest 8x8 frequencies of the 32x32 gray image against their median."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


class DuplicateFilter:
    """Remembers the hashes of kept crops; a crop within max_distance bits of one is a duplicate."""

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        self._hashes = np.zeros(0, np.uint64)

    def is_duplicate(self, hash_value: np.uint64) -> bool:
        if self.max_distance < 0 or self._hashes.size == 0:
            return False
        distances = np.bitwise_count(self._hashes ^ np.uint64(hash_value))
        return bool(distances.min() <= self.max_distance)

    def add(self, hash_value: np.uint64) -> None:
        self._hashes = np.append(self._hashes, np.uint64(hash_value))
