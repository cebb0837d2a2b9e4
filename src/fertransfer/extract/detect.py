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

from .mtcnn_fast import detect_face, refine_faces

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

    def _detection_frames(self, frames: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, float, float]:
        """The frames as MTCNN sees them (shrunk when max_side asks for it) and the x and y scales."""
        height, width = frames[0].shape[:2]
        scale = detection_scale(height, width, self.max_side)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
            return small, size[0] / width, size[1] / height
        return (np.stack(frames) if isinstance(frames, list) else frames), 1.0, 1.0

    @staticmethod
    def _to_detections(boxes: np.ndarray, points: np.ndarray, scale_x: float, scale_y: float) -> Detections:
        """One frame's cascade output, largest face first, in full-resolution pixels."""
        unscale = np.array([1 / scale_x, 1 / scale_y], np.float32)
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        boxes, points = boxes[order].astype(np.float32), points[order].astype(np.float32)
        return Detections(boxes=boxes[:, :4] * np.tile(unscale, 2), probs=boxes[:, 4], landmarks=points * unscale)

    def detect(self, frames: np.ndarray | list[np.ndarray]) -> list[Detections]:
        """Faces in each of a batch of RGB uint8 frames of one size, largest face first."""
        if len(frames) == 0:
            return []
        small, scale_x, scale_y = self._detection_frames(frames)
        min_face = max(PNET_WINDOW, pyramid_face_size(self.min_face_size) * min(scale_x, scale_y))
        m = self._mtcnn
        with torch.no_grad():
            boxes, points = detect_face(small, min_face, m.pnet, m.rnet, m.onet, m.thresholds, m.factor, m.device)
        return [self._to_detections(b, pts, scale_x, scale_y) for b, pts in zip(boxes, points)]

    def refine(self, frame: np.ndarray, previous: Detections) -> Detections:
        """The faces of `previous` (the frame before) found again in `frame` by O-Net alone,
        without the costly P-Net pyramid (see mtcnn_fast.refine_faces). Faces that were not found
        again are missing from the result."""
        small, scale_x, scale_y = self._detection_frames(frame[None])
        candidates = previous.boxes * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
        m = self._mtcnn
        with torch.no_grad():
            boxes, points = refine_faces(small[0], candidates, m.onet, m.thresholds[2], m.device)
        return self._to_detections(boxes, points, scale_x, scale_y)


class VideoFaceDetector:
    """FaceDetector for the consecutive frames of one video: a full detection every
    `detect_every` frames, and in between the previous frame's faces refined by O-Net alone.

    Faces in recorded talks move little from one frame to the next, so the previous frame's
    boxes are candidates good enough for O-Net; skipping the P-Net pyramid, most of a full
    detection's cost, is what makes the frames in between cheap. A frame falls back to a full
    detection when the previous one had no face, or when any face is not found again with at
    least O-Net's threshold probability (a scene cut, the person leaving, a face turning away). A face that
    appears between two full detections is found at the next one, at most detect_every - 1
    frames late. detect_every = 1 detects every frame fully: FaceDetector.detect's results.

    Refined boxes follow the face but not the frame-to-frame jitter of MTCNN's full cascade (its
    final box depends on which P-Net windows fire in each frame): on the shared talk videos a
    refined box and a full detection of the same frame overlap with a median IoU of 0.92-0.95,
    the full detections of consecutive frames 0.93-0.98, so only 84-89% of frames agree with
    full detection at IoU >= 0.9 and the stage's default stays 1 (docs/benchmarks.md, extract).

    detect() keeps the last frame's faces between calls (the stage passes batches of frames of
    one video in order); reset() forgets them before another video.
    """

    def __init__(self, detector: FaceDetector, detect_every: int = 1):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.detector = detector
        self.detect_every = detect_every
        self.counts = {"full": 0, "refined": 0, "fallback": 0}  # frames; the stage's manifest records them
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next frame is detected fully (a new video starts)."""
        self._previous: Detections | None = None
        self._previous_shape: tuple[int, ...] | None = None
        self._frames_seen = 0  # frames of this video so far; every detect_every-th is detected fully

    def detect(self, frames: np.ndarray | list[np.ndarray]) -> list[Detections]:
        """Faces in each of the next consecutive RGB uint8 frames of the video, largest first."""
        if self.detect_every == 1:
            found = self.detector.detect(frames)
            self.counts["full"] += len(found)
            return found
        # Frames due for a full detection by the schedule are detected together, as one batch.
        due = [i for i in range(len(frames)) if (self._frames_seen + i) % self.detect_every == 0]
        scheduled = dict(zip(due, self.detector.detect([frames[i] for i in due])))
        self.counts["full"] += len(due)
        results = []
        for position, frame in enumerate(frames):
            if position in scheduled:
                found = scheduled[position]
            else:
                found = self._refined_or_none(frame)
                if found is None:
                    found = self.detector.detect(frame[None])[0]
                    self.counts["fallback"] += 1
                else:
                    self.counts["refined"] += 1
            results.append(found)
            self._previous, self._previous_shape = found, frame.shape
        self._frames_seen += len(frames)
        return results

    def _refined_or_none(self, frame: np.ndarray) -> Detections | None:
        """The previous frame's faces refined in this frame, or None when a full detection is needed."""
        previous = self._previous
        if previous is None or len(previous) == 0 or frame.shape != self._previous_shape:
            return None
        found = self.detector.refine(frame, previous)  # faces below O-Net's threshold are dropped
        return found if len(found) == len(previous) else None
