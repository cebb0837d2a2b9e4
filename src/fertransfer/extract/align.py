"""Square face crops from the full-resolution frame, rotated so that the eyes are level."""

from __future__ import annotations

import math

import cv2
import numpy as np


def eye_angle(landmarks: np.ndarray) -> float:
    """Tilt of the line from the image-left eye to the image-right eye, in degrees
    (positive: the right eye is lower, i.e. the head leans clockwise on screen)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def alignment_matrix(box: np.ndarray, landmarks: np.ndarray, margin: float, side: int) -> np.ndarray:
    """2x3 affine map from frame pixels to a side x side crop: the face box plus margin, centred,
    rotated about its centre by the eye angle."""
    x1, y1, x2, y2 = (float(v) for v in box)
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    extent = max(x2 - x1, y2 - y1) * (1 + margin)
    matrix = cv2.getRotationMatrix2D(centre, eye_angle(landmarks), side / extent)
    matrix[:, 2] += (side / 2 - centre[0], side / 2 - centre[1])
    return matrix


def align_face(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(size, size, 3) uint8 crop. Rotation happens at full resolution and the shrink by area
    averaging, so that downscaled crops do not alias; borders repeat the edge pixels."""
    extent = max(float(box[2] - box[0]), float(box[3] - box[1])) * (1 + margin)
    side = max(size, int(math.ceil(extent)))
    matrix = alignment_matrix(box, landmarks, margin, side)
    crop = cv2.warpAffine(frame, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(k, 2) points mapped by a 2x3 affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]
