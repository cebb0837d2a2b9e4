"""From detections to the crops worth keeping: cropping, choosing the person, filtering.

Everything here works on arrays; reading videos and writing files is stage.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .align import align_face, eye_angle
from .detect import Detections
from .filters import DuplicateFilter, perceptual_hash, sharpness
from .track import assign_tracks, person_tracks

FILTERS = ("probability", "face_size", "sharpness", "duplicate")


@dataclass
class Face:
    """One detected face and its aligned crop."""

    frame: int
    time: float | None  # seconds into the video; None for images
    box: np.ndarray  # (4,) x1, y1, x2, y2 in frame pixels
    probability: float
    landmarks: np.ndarray  # (5, 2) in frame pixels
    crop: np.ndarray  # (size, size, 3) RGB uint8
    angle: float  # eye-line tilt before alignment, degrees
    track: int = -1
    sharpness: float = 0.0
    source: str = ""  # image file name, for image folders


def crop_faces(
    frames: np.ndarray, indices: list[int], times: list[float | None], detections: list[Detections], size: int, margin: float
) -> list[list[Face]]:
    """An aligned crop of every detected face, per frame."""
    out = []
    for frame, index, t, found in zip(frames, indices, times, detections):
        out.append(
            [
                Face(
                    frame=index,
                    time=t,
                    box=found.boxes[k],
                    probability=float(found.probs[k]),
                    landmarks=found.landmarks[k],
                    crop=align_face(frame, found.boxes[k], found.landmarks[k], size, margin),
                    angle=eye_angle(found.landmarks[k]),
                )
                for k in range(len(found))
            ]
        )
    return out


@dataclass
class Selection:
    chosen: list[Face]  # at most one face per frame
    other_faces: int  # faces of other people (or other tracks)
    tracks: int


def choose_person(faces_per_frame: list[list[Face]], person: str, min_iou: float, max_gap_s: float) -> Selection:
    """Track faces across frames and keep one person's: the dominant person's tracks (see
    track.person_tracks) or the largest face of each frame ("largest")."""
    times = [(faces[0].time if faces and faces[0].time is not None else float(i)) for i, faces in enumerate(faces_per_frame)]
    boxes = [np.array([f.box for f in faces], np.float64).reshape(-1, 4) for faces in faces_per_frame]
    ids = assign_tracks(boxes, times, min_iou, max_gap_s)
    for faces, track_ids in zip(faces_per_frame, ids):
        for face, track in zip(faces, track_ids):
            face.track = int(track)
    total = sum(len(f) for f in faces_per_frame)
    if person == "dominant":
        keep = person_tracks(ids)
        chosen = [f for faces in faces_per_frame for f in faces if f.track in keep]
    elif person == "largest":
        area = lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))  # noqa: E731
        chosen = [max(faces, key=area) for faces in faces_per_frame if faces]
    else:
        raise ValueError(f"unknown person selection {person!r}")
    n_tracks = len({f.track for faces in faces_per_frame for f in faces})
    return Selection(chosen=chosen, other_faces=total - len(chosen), tracks=n_tracks)


@dataclass
class FilterSettings:
    min_probability: float = 0.0
    min_face_px: int = 0
    min_sharpness: float = 0.0


@dataclass
class Filtered:
    kept: list[Face]
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))


def apply_filters(faces: list[Face], settings: FilterSettings, duplicates: DuplicateFilter) -> Filtered:
    """Keep the faces that pass every filter; each removed face counts against the first it
    fails. The duplicate check runs last and against every crop kept so far (all inputs)."""
    result = Filtered(kept=[])
    for face in faces:
        face.sharpness = sharpness(face.crop)
        width, height = face.box[2] - face.box[0], face.box[3] - face.box[1]
        if face.probability < settings.min_probability:
            result.removed["probability"] += 1
        elif min(width, height) < settings.min_face_px:
            result.removed["face_size"] += 1
        elif face.sharpness < settings.min_sharpness:
            result.removed["sharpness"] += 1
        else:
            hash_value = perceptual_hash(face.crop)
            if duplicates.is_duplicate(hash_value):
                result.removed["duplicate"] += 1
            else:
                duplicates.add(hash_value)
                result.kept.append(face)
    return result
