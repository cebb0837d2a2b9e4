"""From detections to the crops worth keeping: cropping, choosing the person, filtering.

Everything here works on arrays; reading videos and writing files is stage.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .align import align_face, alignment_matrix, eye_angle
from .detect import Detections
from .filters import DuplicateFilter, perceptual_hash, sharpness
from .template import landmark_error, template_matrix, warp_face
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
    landmark_error: float = 0.0  # RMS landmark distance from the FER template in the crop, / crop side


@dataclass
class Framing:
    """How crops are cut: "fer" (landmarks onto the FER template) or "box" (box + margin, eyes level).
    The template (5, 2) is also what the landmark error of "box" crops is measured against."""

    kind: str
    size: int
    margin: float
    template: np.ndarray

    def crop(self, frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
        """The crop of one face and its landmark error."""
        if self.kind == "fer":
            matrix = template_matrix(landmarks, self.template, self.size)
            crop = warp_face(frame, matrix, self.size)
        elif self.kind == "box":
            matrix = alignment_matrix(box, landmarks, self.margin, self.size)
            crop = align_face(frame, box, landmarks, self.size, self.margin)
        else:
            raise ValueError(f"unknown framing {self.kind!r} (fer or box)")
        return crop, landmark_error(matrix, landmarks, self.template, self.size)


def crop_faces(
    frames: np.ndarray, indices: list[int], times: list[float | None], detections: list[Detections], framing: Framing
) -> list[list[Face]]:
    """An aligned crop of every detected face, per frame."""
    out = []
    for frame, index, t, found in zip(frames, indices, times, detections):
        faces = []
        for k in range(len(found)):
            crop, error = framing.crop(frame, found.boxes[k], found.landmarks[k])
            faces.append(
                Face(
                    frame=index,
                    time=t,
                    box=found.boxes[k],
                    probability=float(found.probs[k]),
                    landmarks=found.landmarks[k],
                    crop=crop,
                    angle=eye_angle(found.landmarks[k]),
                    landmark_error=error,
                )
            )
        out.append(faces)
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


@dataclass
class TimeSplit:
    footage: list[Face]
    test: list[Face]
    gap: list[Face]  # faces of the frames dropped around the boundary


def split_in_time(faces: list[Face], frames: int, holdout: float, gap: int) -> TimeSplit:
    """The last `holdout` fraction of a clip's `frames` is test; `gap` frames on each side of
    the boundary are dropped so that the two parts hold no near-identical neighbours.
    Frame numbers are the clip's own (0 .. frames-1)."""
    if holdout <= 0:
        return TimeSplit(footage=list(faces), test=[], gap=[])
    boundary = frames - int(round(frames * holdout))  # first test frame
    result = TimeSplit([], [], [])
    for face in faces:
        if face.frame < boundary - gap:
            result.footage.append(face)
        elif face.frame >= boundary + gap:
            result.test.append(face)
        else:
            result.gap.append(face)
    return result


def merge_removed(*parts: Filtered) -> dict[str, int]:
    return {name: sum(p.removed[name] for p in parts) for name in FILTERS}
