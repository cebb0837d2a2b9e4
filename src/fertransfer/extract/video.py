"""Reading frames from video files (OpenCV), in batches, decoded in a background thread."""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from fertransfer.data.images import MAX_PIXELS


class VideoError(Exception):
    """A video that cannot be opened or decoded; the message names the file."""


@dataclass
class VideoInfo:
    path: str
    fps: float
    frame_count: int  # as the container states it; may be 0 or wrong for damaged files
    width: int
    height: int


class FrameSampler:
    """Which frames to use: every n-th, then at most target_fps frames per second of video."""

    def __init__(self, fps: float, every_n: int = 1, target_fps: float = 0.0):
        self.fps = fps
        self.every_n = max(1, every_n)
        self.target_fps = target_fps
        self._next_tick = 0  # index of the next 1/target_fps interval a frame may fill

    def take(self, index: int) -> bool:
        if index % self.every_n:
            return False
        if self.target_fps <= 0:
            return True
        tick = math.floor(index / self.fps * self.target_fps + 1e-9)
        if tick < self._next_tick:
            return False
        self._next_tick = tick + 1
        return True


def open_video(path: str, max_pixels: int = MAX_PIXELS) -> tuple[cv2.VideoCapture, VideoInfo]:
    """The capture and what the container says; a frame size over max_pixels is refused before decoding."""
    if not os.path.exists(path):
        raise VideoError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot be opened as a video (damaged or not a video)")
    info = VideoInfo(
        path=path,
        fps=capture.get(cv2.CAP_PROP_FPS) or 25.0,
        frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    if info.width * info.height > max_pixels:
        capture.release()
        raise VideoError(f"{path}: frames of {info.width}x{info.height} px are over the limit of {max_pixels:,} "
                         f"pixels (fertransfer.data.images.MAX_PIXELS); refused before decoding")
    return capture, info


@dataclass
class FrameBatch:
    indices: list[int]
    frames: np.ndarray  # (B, H, W, 3) RGB uint8
    frames_read: int  # frames decoded so far, sampled or not


def read_batches(
    capture: cv2.VideoCapture, sampler: FrameSampler, batch_size: int, prefetch: int = 2
) -> Iterator[FrameBatch]:
    """Sampled RGB frames in batches of equal-sized frames. Frames are decoded in a thread
    (OpenCV releases the GIL), so decoding overlaps detection. Frames that are skipped are
    grabbed without being decoded."""
    done = object()
    batches: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce() -> None:
        indices: list[int] = []
        frames: list[np.ndarray] = []
        index = 0
        try:
            while not stop.is_set():
                if not capture.grab():
                    break
                if sampler.take(index):
                    ok, frame = capture.retrieve()
                    if not ok:
                        break
                    if frames and frame.shape != frames[0].shape:
                        batches.put(FrameBatch(indices, np.stack(frames), index))
                        indices, frames = [], []
                    indices.append(index)
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    if len(frames) == batch_size:
                        batches.put(FrameBatch(indices, np.stack(frames), index + 1))
                        indices, frames = [], []
                index += 1
            if frames:
                batches.put(FrameBatch(indices, np.stack(frames), index))
            batches.put(FrameBatch([], np.zeros((0, 0, 0, 3), np.uint8), index))
        finally:
            batches.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := batches.get()) is not done:
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
