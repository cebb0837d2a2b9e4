"""FER-like framing: a similarity alignment of a face's 5 MTCNN landmarks onto FER2013's.

FER2013 faces are tight crops, forehead to chin. The template is the mean position of
MTCNN's 5 landmarks (left eye, right eye, nose, mouth left, mouth right; image left/right)
on FER2013 training faces, normalised to the crop side (0..1), stored in the package data
file fer_template.json. Warping a face so that its landmarks land on the template frames it
the way FER2013 frames its faces.

Run as a script to rebuild the template from FER2013's training folders:
    python -m fertransfer.extract.template --fer ../shared/data/fer2013 --out src/fertransfer/extract/fer_template.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

TEMPLATE_FILE = Path(__file__).with_name("fer_template.json")
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class TemplateError(ValueError):
    """A template file that is missing, does not parse or has the wrong shape; names the file."""


def load_template(path: str | Path | None = None) -> np.ndarray:
    """(5, 2) float64 template points in crop-side units, from the package's file by default."""
    path = Path(path) if path is not None else TEMPLATE_FILE
    try:
        data = json.loads(Path(path).read_text())
        points = np.asarray(data["landmarks"], dtype=np.float64)
    except FileNotFoundError:
        raise TemplateError(f"{path}: template file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TemplateError(f"{path}: not valid JSON ({error})") from None
    except (KeyError, TypeError):
        raise TemplateError(f"{path}: expected an object with a 'landmarks' list of 5 [x, y] pairs") from None
    except ValueError:
        raise TemplateError(f"{path}: 'landmarks' is not a list of 5 [x, y] numbers") from None
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise TemplateError(f"{path}: 'landmarks' must be 5 [x, y] pairs, got shape {points.shape}")
    return points


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + translation that maps `source` points onto
    `target` points with least squared error (Umeyama 1991; no reflection). Closed form, so the
    same landmarks always give the same crop, unlike a robust (random-sampling) fit."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mean_s, dst - mean_d
    covariance = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    variance = (s**2).sum() / len(src)
    scale = float((sigma * np.diag(sign)).sum() / variance) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_d - matrix[:, :2] @ mean_s
    return matrix


def template_matrix(landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """2x3 map from frame pixels to a size x size crop in which the landmarks fit the template."""
    return similarity_transform(landmarks, template * size)


def landmark_error(matrix: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> float:
    """RMS distance between the landmarks mapped into the crop and the template points, as a
    fraction of the crop side: 0 means the face is framed exactly like the FER2013 mean face."""
    moved = np.asarray(landmarks, np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return float(np.sqrt(((moved / size - template) ** 2).sum(axis=1).mean()))


def warp_face(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(size, size, C) crop through a 2x3 frame -> crop matrix. When the face shrinks, the
    rotation happens at full resolution and the shrink by area averaging (as align_face does),
    so that crops do not alias; borders repeat the edge pixels."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    side = max(size, int(math.ceil(size / scale))) if scale > 0 else size
    full = matrix * (side / size)
    crop = cv2.warpAffine(frame, full, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


# --- building the template from FER2013 (the script) -------------------------------------


def mean_landmarks(points: np.ndarray) -> dict:
    """Template figures from (n, 5, 2) normalised landmarks: the mean (the least-squares
    template), the spread and the median."""
    points = np.asarray(points, np.float64)
    return {
        "landmarks": np.round(points.mean(axis=0), 4).tolist(),
        "std": np.round(points.std(axis=0), 4).tolist(),
        "median": np.round(np.median(points, axis=0), 4).tolist(),
    }


def _sample_files(fer_root: Path, count: int, seed: int) -> list[Path]:
    """A seeded sample of FER2013 training images, spread evenly over the class folders."""
    train = fer_root / "train"
    classes = sorted(p for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
    if not classes:
        raise SystemExit(f"{train}: no class folders (expected <fer>/train/<class>/*.png)")
    rng = np.random.default_rng(seed)
    per_class = math.ceil(count / len(classes))
    files: list[Path] = []
    for folder in classes:
        names = sorted(folder.glob("*.png"))
        picks = rng.choice(len(names), size=min(per_class, len(names)), replace=False)
        files += [names[i] for i in sorted(picks)]
    return files


def build_template(fer_root: Path, count: int, upscale: int, min_probability: float, seed: int,
                   pad: float = 0.2, min_box: float = 0.5, batch_size: int = 64) -> dict:
    """Mean normalised MTCNN landmarks of confident single faces on upscaled FER2013 train images.

    FER faces fill the image, chin and forehead at the edges; a replicated border (pad, as a
    fraction of the side) lets MTCNN see the whole face, which halves the landmarks' spread
    in a trial. Detections narrower than min_box of the side are parts of faces, not faces."""
    from fertransfer.data.images import read_image

    from .detect import FaceDetector

    files = _sample_files(fer_root, count, seed)
    border = round(pad * upscale)
    detector = FaceDetector(min_face_size=max(20, upscale // 4))
    points, single, confident = [], 0, 0
    for start in range(0, len(files), batch_size):
        batch = [
            cv2.copyMakeBorder(cv2.resize(read_image(f, channels=3), (upscale, upscale), interpolation=cv2.INTER_CUBIC),
                               border, border, border, border, cv2.BORDER_REPLICATE)
            for f in files[start : start + batch_size]
        ]
        for found in detector.detect(np.stack(batch)):
            if len(found) != 1:
                continue
            single += 1
            width = (found.boxes[0, 2] - found.boxes[0, 0]) / upscale
            if found.probs[0] < min_probability or width < min_box:
                continue
            confident += 1
            points.append((found.landmarks[0] - border) / upscale)
    if not points:
        raise SystemExit(f"{fer_root}: MTCNN found no confident single face in {len(files)} images")
    result = mean_landmarks(np.stack(points))
    return {
        "description": "Mean MTCNN landmarks on FER2013 training faces, as fractions of the crop side (x right, y down)",
        "order": list(LANDMARK_NAMES),
        **result,
        "faces_used": confident,
        "images_sampled": len(files),
        "single_detections": single,
        "min_probability": min_probability,
        "min_box_fraction": min_box,
        "upscale_px": upscale,
        "border_fraction": pad,
        "seed": seed,
    }


def to_json(data: dict) -> str:
    """One key per line, lists kept on their line: small diffs when the template is rebuilt."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items()) + "\n}\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build the FER2013 5-landmark template (fer_template.json).")
    parser.add_argument("--fer", required=True, type=Path, help="FER2013 root with train/<class>/*.png")
    parser.add_argument("--out", type=Path, default=TEMPLATE_FILE, help="where to write the JSON")
    parser.add_argument("--count", type=int, default=3500, help="images to sample, spread over the classes")
    parser.add_argument("--upscale", type=int, default=160, help="side the 48 px images are enlarged to (cubic)")
    parser.add_argument("--min-probability", type=float, default=0.95, help="keep detections at least this sure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    data = build_template(args.fer, args.count, args.upscale, args.min_probability, args.seed)
    args.out.write_text(to_json(data))
    print(f"{args.out}: template from {data['faces_used']} of {data['images_sampled']} faces")
    for name, (x, y), (sx, sy) in zip(LANDMARK_NAMES, data["landmarks"], data["std"]):
        print(f"  {name:12s} x={x:.4f} (sd {sx:.4f})  y={y:.4f} (sd {sy:.4f})")


if __name__ == "__main__":
    main()
