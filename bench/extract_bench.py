"""Speed and box agreement of the extract stage's detector against plain facenet-pytorch.

The plain loop is what one writes first: ``MTCNN(keep_all=True).detect(frame)`` on every
full-resolution frame. The stage's detector (fertransfer.extract.detect.FaceDetector, with
the stage's default options) detects batches of frames, starts MTCNN's pyramid at the
default min_face_size and resamples from an integral image.

Every frame of every video is decoded into memory first; only detection is timed. The two
loops run interleaved, one batch each in turn, so that both see the same load on a shared
machine. A frame agrees when both find no face, or when the largest boxes of both overlap
with IoU >= 0.9.

    PYTHONPATH=src python bench/extract_bench.py [--threads 2] [--max-frames N] [VIDEO ...]

The last line reads ``speedup=<x> agreement=<fraction>`` (all videos together).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fertransfer.extract.detect import FaceDetector
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
    args = parser.parse_args()
    videos = args.videos or sorted(DEFAULT_VIDEOS.glob("*.mp4"))
    defaults = ExtractOptions()
    torch.set_num_threads(args.threads)
    from facenet_pytorch import MTCNN

    plain = MTCNN(keep_all=True, device="cpu")
    ours = FaceDetector(defaults.min_face_size, tuple(defaults.thresholds), defaults.detect_max_side, "cpu")
    batch = defaults.batch_size
    print(f"machine: {machine_description()}, {args.threads} torch threads, torch {torch.__version__}")
    print(f"stage detector: min_face_size={defaults.min_face_size} batch_size={batch} detect_max_side={defaults.detect_max_side}")
    print(f"{'video':<16}{'frames':>7}{'size':>10}{'plain fps':>11}{'stage fps':>11}{'speedup':>9}{'agree':>8}")
    totals = {"frames": 0, "plain_s": 0.0, "ours_s": 0.0, "agree": 0}
    with torch.no_grad():
        for video in videos:
            frames = read_frames(video, args.max_frames)
            plain.detect(frames[0])  # first calls set up kernels; not timed
            ours.detect(frames[:1])
            plain_s = ours_s = 0.0
            agree = 0
            for start in range(0, len(frames), batch):
                chunk = frames[start : start + batch]
                t0 = time.perf_counter()
                reference = [plain.detect(frame)[0] for frame in chunk]
                t1 = time.perf_counter()
                found = ours.detect(chunk)
                t2 = time.perf_counter()
                plain_s += t1 - t0
                ours_s += t2 - t1
                agree += sum(agrees(largest_box(r), largest_box(f.boxes)) for r, f in zip(reference, found))
            n = len(frames)
            print(
                f"{video.name:<16}{n:>7}{f'{frames.shape[2]}x{frames.shape[1]}':>10}{n / plain_s:>11.2f}"
                f"{n / ours_s:>11.2f}{plain_s / ours_s:>8.1f}x{agree / n:>8.3f}",
                flush=True,
            )
            totals["frames"] += n
            totals["plain_s"] += plain_s
            totals["ours_s"] += ours_s
            totals["agree"] += agree
    n = totals["frames"]
    speedup = totals["plain_s"] / totals["ours_s"]
    print(
        f"{'all':<16}{n:>7}{'':>10}{n / totals['plain_s']:>11.2f}{n / totals['ours_s']:>11.2f}"
        f"{speedup:>8.1f}x{totals['agree'] / n:>8.3f}"
    )
    print(f"speedup={speedup:.2f} agreement={totals['agree'] / n:.4f}")


if __name__ == "__main__":
    main()
