"""Speed and box agreement of the extract stage's detector against plain facenet-pytorch.

The plain loop is what one writes first: ``MTCNN(keep_all=True).detect(frame)`` on every
full-resolution frame. The stage's detector (fertransfer.extract.detect.VideoFaceDetector over
FaceDetector, with the stage's default options, as process_video runs it) detects batches of
frames, starts MTCNN's pyramid at the default min_face_size, resamples from an integral image
and, with detect_every > 1, refines the previous frame's faces between full detections.
``--detect-every 1 2 4`` measures several values against the same plain loop (one row each).

Every frame of every video is decoded into memory first; only detection is timed. The two
loops run interleaved, one batch each in turn, so that both see the same load on a shared
machine. A frame agrees when both find no face, or when the largest boxes of both overlap
with IoU >= 0.9.

    PYTHONPATH=src python bench/extract_bench.py [--threads 2] [--max-frames N] [--detect-every N ...] [VIDEO ...]

The last line reads ``speedup=<x> agreement=<fraction>`` (all videos together, for the first
--detect-every value: the stage's default unless given).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fertransfer.extract.detect import FaceDetector, VideoFaceDetector
from fertransfer.extract.options import ExtractOptions
from fertransfer.extract.track import iou_matrix
from fertransfer.pipelines.runner import machine_description

DEFAULT_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def read_frames(path: Path, limit: int | None) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def largest_box(boxes) -> np.ndarray | None:
    if boxes is None or len(boxes) == 0:
        return None
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


def agrees(a: np.ndarray | None, b: np.ndarray | None, min_iou: float = 0.9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(iou_matrix(a, b)[0, 0] >= min_iou)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help=f"default: every mp4 in {DEFAULT_VIDEOS}")
    parser.add_argument("--threads", type=int, default=ExtractOptions().threads or os.cpu_count(),
                        help="torch CPU threads for both loops (default: the stage's)")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each video")
    parser.add_argument("--detect-every", type=int, nargs="+", default=[ExtractOptions().detect_every],
                        help="detect_every values to measure, each against the same plain loop (default: the stage's)")
    args = parser.parse_args()
    videos = args.videos or sorted(DEFAULT_VIDEOS.glob("*.mp4"))
    defaults = ExtractOptions()
    torch.set_num_threads(args.threads)
    from facenet_pytorch import MTCNN

    plain = MTCNN(keep_all=True, device="cpu")
    detector = FaceDetector(defaults.min_face_size, tuple(defaults.thresholds), defaults.detect_max_side, "cpu")
    batch = defaults.batch_size
    print(f"machine: {machine_description()}, {args.threads} torch threads, torch {torch.__version__}")
    print(f"stage detector: min_face_size={defaults.min_face_size} batch_size={batch} "
          f"detect_max_side={defaults.detect_max_side} detect_every={defaults.detect_every} (default); "
          f"measured: detect_every={' '.join(map(str, args.detect_every))}")
    print(f"{'video':<16}{'every':>6}{'frames':>7}{'size':>10}{'plain fps':>11}{'stage fps':>11}{'speedup':>9}{'agree':>8}")
    totals = {every: {"frames": 0, "plain_s": 0.0, "ours_s": 0.0, "agree": 0} for every in args.detect_every}
    with torch.no_grad():
        for video in videos:
            frames = read_frames(video, args.max_frames)
            plain.detect(frames[0])  # first calls set up kernels; not timed
            detector.detect(frames[:1])
            stage = {every: VideoFaceDetector(detector, every) for every in args.detect_every}
            plain_s = 0.0
            ours_s = dict.fromkeys(args.detect_every, 0.0)
            agree = dict.fromkeys(args.detect_every, 0)
            for start in range(0, len(frames), batch):
                chunk = frames[start : start + batch]
                t0 = time.perf_counter()
                reference = [largest_box(plain.detect(frame)[0]) for frame in chunk]
                plain_s += time.perf_counter() - t0
                for every, video_detector in stage.items():
                    t1 = time.perf_counter()
                    found = video_detector.detect(chunk)
                    ours_s[every] += time.perf_counter() - t1
                    agree[every] += sum(agrees(r, largest_box(f.boxes)) for r, f in zip(reference, found))
            n = len(frames)
            for every in args.detect_every:
                print(
                    f"{video.name:<16}{every:>6}{n:>7}{f'{frames.shape[2]}x{frames.shape[1]}':>10}{n / plain_s:>11.2f}"
                    f"{n / ours_s[every]:>11.2f}{plain_s / ours_s[every]:>8.1f}x{agree[every] / n:>8.3f}",
                    flush=True,
                )
                total = totals[every]
                total["frames"] += n
                total["plain_s"] += plain_s
                total["ours_s"] += ours_s[every]
                total["agree"] += agree[every]
    for every, total in totals.items():
        n = total["frames"]
        print(
            f"{'all':<16}{every:>6}{n:>7}{'':>10}{n / total['plain_s']:>11.2f}{n / total['ours_s']:>11.2f}"
            f"{total['plain_s'] / total['ours_s']:>8.1f}x{total['agree'] / n:>8.3f}"
        )
    first = totals[args.detect_every[0]]
    print(f"speedup={first['plain_s'] / first['ours_s']:.2f} agreement={first['agree'] / first['frames']:.4f}")


if __name__ == "__main__":
    main()
