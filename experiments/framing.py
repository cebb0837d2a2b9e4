"""Which framing makes a person's crops look more like FER2013 faces: "box" or "fer".

    PYTHONPATH=src python experiments/framing.py [--data ../shared/data] [--fer-images 1000]

For speaker_a (videos/speaker_a.mp4) and MEAD's M030 (every clip, all frames), MTCNN runs once
per frame (the largest face is taken) and each face is cropped both ways from the same
detection. Two figures per person and framing:

    landmark error   median RMS distance of the crop's 5 landmarks from the FER template, as a
                     fraction of the crop side (0 = framed like the mean FER2013 face)
    SWD              sliced Wasserstein distance (x1000, mean over pyramid levels) between the
                     crops (gray, area-resized to 48 px) and FER2013 images (seeded sample):
                     lower = the crops look more like FER faces before any translation

The FER sample is drawn from train (as the CycleGAN sees it; blurred in the shared copy, see
results.md) and from PublicTest (sharp; never PrivateTest); "FER vs FER" is the distance between two disjoint
samples of the same split, the floor the figures can reach. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np

from fertransfer.cyclegan.swd import swd
from fertransfer.data.images import read_image
from fertransfer.extract.core import Framing
from fertransfer.extract.detect import FaceDetector
from fertransfer.extract.template import load_template
from fertransfer.extract.video import FrameSampler, open_video, read_batches


def crops_of(videos: list[Path], min_face_size: int, framings: dict[str, Framing]) -> dict[str, tuple[list, list]]:
    """Per framing: the crops (gray 48 px) and landmark errors of the largest face of every frame."""
    detector = FaceDetector(min_face_size=min_face_size)
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in framings}
    for video in videos:
        capture, info = open_video(str(video))
        with closing(read_batches(capture, FrameSampler(info.fps), 16)) as batches:
            for batch in batches:
                for frame, found in zip(batch.frames, detector.detect(batch.frames)):
                    if not len(found):
                        continue
                    for name, framing in framings.items():
                        crop, error = framing.crop(frame, found.boxes[0], found.landmarks[0])
                        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
                        out[name][0].append(cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)[..., None])
                        out[name][1].append(error)
        capture.release()
    return out


def fer_sample(folder: Path, pattern: str, count: int, rng: np.random.Generator) -> np.ndarray:
    files = sorted(folder.glob(pattern))
    picks = rng.choice(len(files), size=min(count, len(files)), replace=False)
    return np.stack([read_image(files[i], channels=1) for i in picks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--fer-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    template = load_template()
    framings = {name: Framing(name, 128, 0.2, template) for name in ("box", "fer")}
    persons = {
        "speaker_a": ([args.data / "videos" / "speaker_a.mp4"], 80),
        "M030": (sorted((args.data / "mead" / "M030").glob("*/*.mp4")), 56),
    }
    rng = np.random.default_rng(args.seed)
    fer = {}
    # PublicTest only: PrivateTest is for the final classifier scores, never for choices like this one.
    for split, pattern in (("train", "train/*/*.png"), ("test", "test/*/PublicTest_*.png")):
        both = fer_sample(args.data / "fer2013", pattern, 2 * args.fer_images, rng)
        fer[split] = (both[: args.fer_images], both[args.fer_images :])
    print("| person | framing | crops | median landmark error | SWD to FER train | SWD to FER PublicTest |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for person, (videos, min_face) in persons.items():
        started = time.perf_counter()
        results = crops_of(videos, min_face, framings)
        for name, (crops, errors) in results.items():
            images = np.stack(crops)
            d_train = swd(images, fer["train"][0], seed=args.seed)["mean"]
            d_test = swd(images, fer["test"][0], seed=args.seed)["mean"]
            print(f"| {person} | {name} | {len(images)} | {np.median(errors):.4f} | {d_train:.1f} | {d_test:.1f} |", flush=True)
        print(f"<!-- {person}: {time.perf_counter() - started:.0f} s -->", flush=True)
    floor = {split: swd(a, b, seed=args.seed)["mean"] for split, (a, b) in fer.items()}
    print(f"| FER vs FER (same split) | | {args.fer_images} | | {floor['train']:.1f} | {floor['test']:.1f} |")


if __name__ == "__main__":
    main()
