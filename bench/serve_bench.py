"""Latency of `pipeline serve` per 640x480 camera frame: MTCNN detection plus classification.

    PYTHONPATH=src python bench/serve_bench.py [--model M] [--frames 100] [--threads 1 2] [--min-face-size 80 20]

Frames are the demo portrait framed as a webcam shows a person (fertransfer.demo.video.webcam_frame),
shifted by a few pixels from frame to frame, JPEG-encoded as the page sends them. Two times per frame:
`predict_image` alone (detection + classification, what the target is about) and the whole of
serving it (JPEG decode + predict_image, the `ms` the API reports). Without --model the classifier is
an untrained CNN with the classify stage's defaults (width 48, ten-crop test-time augmentation),
which costs what a trained default model costs. The first frames are left out as warm-up. On a
shared machine the wall clock includes the neighbours' work: CPU time per frame is printed beside it.
Target: median <= 150 ms on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
import torch

from fertransfer.classify.cnn import CnnClassifier, CnnConfig, FaceNet
from fertransfer.classify.predict import FaceDetector, load_checked_classifier, predict_image
from fertransfer.data import FER_CLASSES
from fertransfer.demo.video import webcam_frame
from fertransfer.pipelines.runner import machine_description
from fertransfer.serve.app import image_from_bytes

WARMUP = 5


def default_classifier() -> CnnClassifier:
    config = CnnConfig()
    return CnnClassifier(FaceNet(len(FER_CLASSES), 1, config.width, config.dropout).eval(), list(FER_CLASSES), 1, 48, config)


def camera_frames(count: int) -> list[bytes]:
    frame = webcam_frame(640, 480)
    shifts = [(round(6 * np.sin(i / 5)), round(4 * np.cos(i / 7))) for i in range(count)]
    return [cv2.imencode(".jpg", cv2.cvtColor(np.roll(frame, s, axis=(1, 0)), cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for s in shifts]


def bench(classifier, detector, frames: list[bytes]) -> dict:
    predict_ms, total_ms, cpu_ms, faces = [], [], [], 0
    for i, data in enumerate(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        rgb, _, _ = image_from_bytes(data)
        t1 = time.perf_counter()
        found = predict_image(classifier, rgb, detector)
        t2, c2 = time.perf_counter(), time.process_time()
        if i >= WARMUP:
            predict_ms.append((t2 - t1) * 1000)
            total_ms.append((t2 - t0) * 1000)
            cpu_ms.append((c2 - c0) * 1000)
            faces += len(found)
    return {"median": statistics.median(predict_ms), "p90": float(np.percentile(predict_ms, 90)),
            "total": statistics.median(total_ms), "cpu": statistics.median(cpu_ms), "faces": faces / len(predict_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a classify model folder (default: an untrained CNN of the stage's defaults)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads, one run each")
    parser.add_argument("--min-face-size", type=int, nargs="+", default=[80, 20],
                        help="MTCNN's smallest face, one run each (80: serve's default, 20: predict's)")
    args = parser.parse_args()
    classifier = load_checked_classifier(args.model) if args.model else default_classifier()
    frames = camera_frames(args.frames + WARMUP)
    load = os.getloadavg()[0]
    print(f"machine: {machine_description()}, load average {load:.1f} at the start; "
          f"torch {torch.__version__}")
    print(f"classifier: {classifier.engine} {classifier.channels}x{classifier.size}x{classifier.size}, "
          f"tta {getattr(getattr(classifier, 'config', None), 'tta', '-')}; {args.frames} frames of 640x480 after "
          f"{WARMUP} warm-up")
    print(f"{'threads':>7}{'min face':>9}{'median ms':>11}{'p90 ms':>8}{'+decode ms':>12}{'cpu ms':>8}{'faces':>7}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for min_face in args.min_face_size:
            r = bench(classifier, FaceDetector(min_size=min_face), frames)
            print(f"{threads:>7}{min_face:>9}{r['median']:>11.1f}{r['p90']:>8.1f}{r['total']:>12.1f}{r['cpu']:>8.1f}"
                  f"{r['faces']:>7.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
