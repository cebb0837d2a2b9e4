"""A synthetic "lecture" video from the portrait that ships with matplotlib.

It gives the extract stage a real face to find without downloads: the portrait pans,
zooms, tilts and changes lighting like a lecturer moving about, and for a stretch of
frames only a slide is shown, so that frames without a face are exercised too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class DemoVideoSpec:
    frames: int = 240
    fps: float = 24.0
    width: int = 384
    height: int = 288
    # Fraction of the timeline (start, end) during which only the slide is visible.
    no_face: tuple[float, float] = (0.6, 0.75)


def portrait() -> np.ndarray:
    """Grace Hopper's portrait (RGB), shipped inside matplotlib."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _slide(width: int, height: int) -> np.ndarray:
    """A plain lecture slide: a title bar and a few lines of 'text'."""
    slide = np.full((height, width, 3), 236, np.uint8)
    cv2.rectangle(slide, (0, 0), (width, height // 6), (40, 70, 140), -1)
    rng = np.random.default_rng(7)
    for i in range(6):
        y = height // 4 + i * height // 10
        length = int(width * rng.uniform(0.4, 0.85))
        cv2.line(slide, (width // 10, y), (width // 10 + length, y), (90, 90, 90), 3)
    return slide


def face_visible(index: int, spec: DemoVideoSpec) -> bool:
    t = index / max(1, spec.frames - 1)
    return not (spec.no_face[0] <= t < spec.no_face[1])


def render_frame(index: int, spec: DemoVideoSpec, face: np.ndarray, slide: np.ndarray) -> np.ndarray:
    t = index / max(1, spec.frames - 1)
    if not face_visible(index, spec):
        return slide.copy()
    w, h = spec.width, spec.height
    background = (slide * 0.35 + 120).astype(np.uint8)
    scale = 0.42 + 0.1 * np.sin(2 * np.pi * t)  # slow zoom in and out
    angle = 7.0 * np.sin(2 * np.pi * 1.5 * t)  # head tilt, degrees
    centre_x = w * (0.5 + 0.18 * np.sin(2 * np.pi * 0.8 * t))  # pan left and right
    centre_y = h * (0.55 + 0.04 * np.cos(2 * np.pi * t))
    fh, fw = face.shape[:2]
    matrix = cv2.getRotationMatrix2D((fw / 2, fh / 2), angle, scale)
    matrix[:, 2] += (centre_x - fw / 2, centre_y - fh / 2)
    warped = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((fh, fw), 255, np.uint8), matrix, (w, h))[..., None] / 255.0
    gain = 0.75 + 0.35 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.6 * t + 1.0))  # lighting drift
    frame = warped.astype(np.float32) * gain * mask + background * (1 - mask)
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_demo_video(path: str | Path, spec: DemoVideoSpec = DemoVideoSpec()) -> Path:
    """Write the demo video as H.264 MP4 and return its path."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    face, slide = portrait(), _slide(spec.width, spec.height)
    with imageio.get_writer(path, fps=spec.fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for i in range(spec.frames):
            writer.append_data(render_frame(i, spec, face, slide))
    return path


def webcam_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """The portrait as a webcam sees a person at a desk: the face about a third of the frame high."""
    background = np.full((height, width, 3), (96, 110, 124), np.uint8)
    face = portrait()
    scale = 0.8 * height / face.shape[0]
    face = cv2.resize(face, (round(face.shape[1] * scale), round(face.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    top, left = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
    background[top : top + face.shape[0], left : left + face.shape[1]] = face
    return background


def write_y4m(path: str | Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """RGB frames as an uncompressed Y4M video (4:2:0), what Chromium's fake camera plays."""
    path = Path(path)
    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            handle.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
