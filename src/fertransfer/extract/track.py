"""Following faces from frame to frame by box overlap, to tell one person's faces from others'."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in a (n, 4) with every box in b (m, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def assign_tracks(
    boxes_per_frame: list[np.ndarray], times: list[float], min_iou: float, max_gap_s: float
) -> list[np.ndarray]:
    """Track id (int) of every box, frame by frame.

    Each frame's boxes are matched one-to-one to the live tracks (those seen within
    max_gap_s) by the Hungarian method on IoU with each track's last box; a match needs
    IoU >= min_iou, and unmatched boxes start new tracks.
    """
    last_box: list[np.ndarray] = []
    last_time: list[float] = []
    ids_per_frame = []
    for boxes, t in zip(boxes_per_frame, times):
        ids = np.full(len(boxes), -1, np.int64)
        live = [k for k in range(len(last_box)) if t - last_time[k] <= max_gap_s]
        if len(boxes) and live:
            overlap = iou_matrix(boxes, np.stack([last_box[k] for k in live]))
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols):
                if overlap[r, c] >= min_iou:
                    ids[r] = live[c]
        for i in range(len(boxes)):
            if ids[i] < 0:
                ids[i] = len(last_box)
                last_box.append(boxes[i])
                last_time.append(t)
            else:
                last_box[ids[i]] = boxes[i]
                last_time[ids[i]] = t
        ids_per_frame.append(ids)
    return ids_per_frame


def person_tracks(ids_per_frame: list[np.ndarray]) -> set[int]:
    """The tracks of the dominant person: the track seen in the most frames, plus every
    track that never shares a frame with those already taken (longest first).

    IoU tracks break whenever the face leaves the picture (a slide, a cut); a track that is
    never on screen together with the person is taken to be the person coming back, while
    faces seen at the same time as the person are someone else's.
    """
    frames_of: dict[int, set[int]] = {}
    for frame, ids in enumerate(ids_per_frame):
        for track in np.asarray(ids).tolist():
            frames_of.setdefault(int(track), set()).add(frame)
    chosen: set[int] = set()
    covered: set[int] = set()
    for track in sorted(frames_of, key=lambda t: (-len(frames_of[t]), t)):
        if covered.isdisjoint(frames_of[track]):
            chosen.add(track)
            covered |= frames_of[track]
    return chosen
