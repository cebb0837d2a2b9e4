"""MTCNN face detection on batches of frames, fast where faces are large.

MTCNN scans an image pyramid whose first (largest) level is the frame scaled by
12 / min_face_size; the large levels, which find small faces, cost the most. Lecture and
interview clips show faces a third of the frame high, so a min_face_size of 80 px skips
them. The pyramid still starts on one of the levels MTCNN uses by default (see
pyramid_face_size), and every level and candidate is resampled from the full-resolution
frame (mtcnn_fast), so boxes match a default full-resolution run on the same faces.
Optionally frames are also shrunk before detection (max_side) for very large videos, with
boxes and landmarks scaled back so that crops come from the full-resolution frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN

from .mtcnn_fast import detect_face

# MTCNN's P-Net sees 12x12 windows: smaller faces cannot be found at any scale.
PNET_WINDOW = 12
# facenet-pytorch's default pyramid: the first level finds 20 px faces, each next one 1/0.709 larger.
BASE_FACE_SIZE = 20.0
PYRAMID_FACTOR = 0.709


def pyramid_face_size(min_face_size: float) -> float:
    """The largest face size of MTCNN's default pyramid that is <= min_face_size.

    Starting the pyramid on one of the default levels (rather than anywhere) means the levels
    that remain are exactly those a default full-resolution run uses for large faces, so the
    boxes agree with it; only the costly large levels, which find small faces, are skipped.
    """
    if min_face_size <= BASE_FACE_SIZE:
        return float(min_face_size)
    steps = math.floor(math.log(BASE_FACE_SIZE / min_face_size, PYRAMID_FACTOR) + 1e-9)
    return BASE_FACE_SIZE / PYRAMID_FACTOR**steps


@dataclass
class Detections:
    """Faces found in one frame, in full-resolution pixel coordinates."""

    boxes: np.ndarray  # (k, 4) float32: x1, y1, x2, y2
    probs: np.ndarray  # (k,) float32
    landmarks: np.ndarray  # (k, 5, 2) float32: left eye, right eye, nose, mouth left, mouth right (image left/right)

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Factor that shrinks a frame so its longer side is at most `max_side` (0: never shrink)."""
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return 1.0
    return max_side / longest


class FaceDetector:
    """facenet-pytorch's MTCNN networks, run on batches of frames by mtcnn_fast.detect_face.

    min_face_size is in full-resolution pixels; when frames are shrunk first (max_side) it is
    converted to detection pixels, so the same config finds the same faces at any scale.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        max_side: int = 0,
        device: str = "cpu",
    ):
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.device = device
        self._mtcnn = MTCNN(keep_all=True, thresholds=list(thresholds), min_face_size=min_face_size, device=device)
        for net in (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet):
            net.to(memory_format=torch.channels_last)

    def detect(self, frames: np.ndarray | list[np.ndarray]) -> list[Detections]:
        """Faces in each of a batch of RGB uint8 frames of one size, largest face first."""
        if len(frames) == 0:
            return []
        height, width = frames[0].shape[:2]
        scale = detection_scale(height, width, self.max_side)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
            scale_x, scale_y = size[0] / width, size[1] / height
        else:
            small = np.stack(frames) if isinstance(frames, list) else frames
            scale_x = scale_y = 1.0
        min_face = max(PNET_WINDOW, pyramid_face_size(self.min_face_size) * min(scale_x, scale_y))
        m = self._mtcnn
        with torch.no_grad():
            boxes, points = detect_face(small, min_face, m.pnet, m.rnet, m.onet, m.thresholds, m.factor, m.device)
        unscale = np.array([1 / scale_x, 1 / scale_y], np.float32)
        results = []
        for b, pts in zip(boxes, points):
            order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")
            b, pts = b[order].astype(np.float32), pts[order].astype(np.float32)
            results.append(Detections(boxes=b[:, :4] * np.tile(unscale, 2), probs=b[:, 4], landmarks=pts * unscale))
        return results
