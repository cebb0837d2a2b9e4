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

    PYTHONPATH=src python bench/serve_bench.py --http [--model M] [--requests 200] [--concurrency 20]

times the real server instead (`pipeline serve` started as a subprocess, spoken to over HTTP): a
109 KB PNG of 30000x30000 pixels (a decompression bomb) answered with 413 (targets: under 100 ms,
under 50 MB of extra memory: the server's peak RSS, VmHWM, before and after, and tracemalloc's peak
around the same request in this process), then `--requests` camera frames sent `--concurrency` at a
time (target: 0 errors; p50/p95 per request).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from fertransfer.classify.predict import FaceDetector, load_checked_classifier, predict_image
from fertransfer.data import FER_CLASSES
from fertransfer.demo.video import webcam_frame
from fertransfer.expression.cnn import CnnClassifier, CnnConfig, FaceNet
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


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit gray PNG of zeros (the issue's 109 KB file for 30000x30000)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row, packer = b"\x00" * (1 + (width + 7) // 8), zlib.compressobj(9)
    block = max(1, 4_000_000 // len(row))
    body = b"".join(packer.compress(row * min(block, height - at)) for at in range(0, height, block)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def post(port: int, body: bytes, content_type: str) -> tuple[int, float]:
    """(status, milliseconds) of one POST /api/predict on a fresh connection."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/api/predict", body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MB: its peak and current resident memory."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def http_bench(args: argparse.Namespace) -> None:
    """The real server over HTTP: the bomb's 413, then a burst of concurrent camera frames."""
    from starlette.testclient import TestClient

    from fertransfer.classify.predict import whole_image
    from fertransfer.expression.models import save_classifier
    from fertransfer.serve.app import create_app

    bomb = png_bomb(30000, 30000)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or str(Path(scratch) / "model")
        if not args.model:
            save_classifier(default_classifier(), Path(model))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        server = subprocess.Popen([sys.executable, "-m", "fertransfer.pipelines.cli", "serve", "--model", model,
                                   "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        try:
            line = server.stdout.readline()
            if "serving" not in line:
                raise SystemExit(f"the server did not start: {line}{server.stdout.read()}")
            print(f"machine: {machine_description()}, load average {os.getloadavg()[0]:.1f} at the start")
            # A first request to a fresh server pays for its worker thread and lazy imports (about 0.4 s
            # under load): one refused non-image POST first, so that the bomb's figures are its own.
            print(f"warm-up: a non-image POST answered {post(port, b'not an image', 'image/png')[0]}")
            hwm_before, rss_before = peak_rss_mb(server.pid)
            bomb_runs = [post(port, bomb, "image/png") for _ in range(10)]
            hwm_after, rss_after = peak_rss_mb(server.pid)
            bomb_ms = [ms for _, ms in bomb_runs]
            print(f"bomb: {len(bomb)} bytes, 30000x30000 px; statuses {sorted({s for s, _ in bomb_runs})}; "
                  f"ms per request median {statistics.median(bomb_ms):.1f}, max {max(bomb_ms):.1f} "
                  f"(10 requests: {', '.join(f'{m:.0f}' for m in bomb_ms)})")
            print(f"server peak RSS (VmHWM) {hwm_before:.0f} -> {hwm_after:.0f} MB (+{hwm_after - hwm_before:.1f}), "
                  f"RSS {rss_before:.0f} -> {rss_after:.0f} MB")
            if args.requests < 1:
                return
            frames = camera_frames(args.requests)
            post(port, frames[0], "image/jpeg")  # warm-up
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(lambda body: post(port, body, "image/jpeg"), frames))
            seconds = time.perf_counter() - started
            errors = sum(status != 200 for status, _ in results)
            ms = [m for _, m in results]
            print(f"{args.requests} requests, {args.concurrency} at a time: {errors} errors, "
                  f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, max {max(ms):.0f} ms, "
                  f"{args.requests / seconds:.1f} requests/s")
            print(f"load average {os.getloadavg()[0]:.1f} at the end")
        finally:
            server.terminate()
            server.wait(30)
    # The same refusal in this process, under tracemalloc: what the request allocates at its peak.
    client = TestClient(create_app(default_classifier(), whole_image), base_url="http://127.0.0.1:8000")
    client.post("/api/predict", content=camera_frames(1)[0])
    tracemalloc.start()
    answer = client.post("/api/predict", content=bomb, headers={"Content-Type": "image/png"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"in-process (TestClient): status {answer.status_code}, tracemalloc peak {peak / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a classify model folder (default: an untrained CNN of the stage's defaults)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads, one run each")
    parser.add_argument("--min-face-size", type=int, nargs="+", default=[80, 20],
                        help="MTCNN's smallest face, one run each (80: serve's default, 20: predict's)")
    parser.add_argument("--http", action="store_true",
                        help="time the real server instead: the 30000x30000 PNG's 413 and concurrent requests")
    parser.add_argument("--requests", type=int, default=200, help="--http: camera frames sent")
    parser.add_argument("--concurrency", type=int, default=20, help="--http: requests in flight at a time")
    args = parser.parse_args()
    if args.http:
        http_bench(args)
        return
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
