"""A labelled "smiley" expression dataset in the 7 FER classes, drawn from scratch.

Each class has its own eyebrow, eye and mouth shapes (angry brows slant down to the
centre, sad brows up, surprise has an open round mouth, ...), varied in size, position,
tilt, stroke, contrast and noise. It is small and learnable, so every stage can be run and
tested end to end without FER2013. Images are 48x48 grayscale in the Kaggle folder layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fertransfer.data.classes import FER_CLASSES

SIZE = 48
SCALE = 4  # draw at 4x and shrink, for smooth strokes

# FER2013's class proportions, so that the demo is imbalanced the same way (disgust rare).
FER_TRAIN_SHARE = {
    "angry": 0.139, "disgust": 0.015, "fear": 0.143, "happy": 0.251,
    "sad": 0.168, "surprise": 0.110, "neutral": 0.173,
}

# Per class: (inner brow y, outer brow y) for each side, eye radius, mouth shape.
FEATURES = {
    "angry":    {"brows": ((-0.30, -0.55), (-0.30, -0.55)), "eye": 0.08, "mouth": ("curve", -0.06, 0.26)},
    "disgust":  {"brows": ((-0.32, -0.52), (-0.48, -0.46)), "eye": 0.06, "mouth": ("wave", 0.0, 0.34)},
    "fear":     {"brows": ((-0.60, -0.42), (-0.60, -0.42)), "eye": 0.13, "mouth": ("oval", 0.30, 0.08)},
    "happy":    {"brows": ((-0.48, -0.48), (-0.48, -0.48)), "eye": 0.09, "mouth": ("curve", 0.18, 0.42)},
    "sad":      {"brows": ((-0.58, -0.40), (-0.58, -0.40)), "eye": 0.08, "mouth": ("curve", -0.15, 0.34)},
    "surprise": {"brows": ((-0.68, -0.66), (-0.68, -0.66)), "eye": 0.14, "mouth": ("oval", 0.15, 0.17)},
    "neutral":  {"brows": ((-0.47, -0.47), (-0.47, -0.47)), "eye": 0.09, "mouth": ("curve", 0.0, 0.32)},
}


def draw_smiley(name: str, rng: np.random.Generator) -> np.ndarray:
    """One 48x48 uint8 face of class `name`."""
    feature = FEATURES[name]
    size = SIZE * SCALE
    dark_background = rng.random() < 0.5
    background = rng.uniform(10, 80) if dark_background else rng.uniform(170, 245)
    skin = rng.uniform(150, 230) if dark_background else rng.uniform(90, 160)
    ink = rng.uniform(0, 50)
    image = np.full((size, size), background, np.float32)

    radius = rng.uniform(15, 22) * SCALE
    cx = size / 2 + rng.uniform(-3, 3) * SCALE
    cy = size / 2 + rng.uniform(-3, 3) * SCALE
    stroke = max(1, int(round(rng.uniform(1.0, 2.2) * SCALE)))
    jitter = lambda v, s=0.04: v + rng.uniform(-s, s)  # noqa: E731

    def point(x: float, y: float) -> tuple[int, int]:
        return int(round(cx + x * radius)), int(round(cy + y * radius))

    cv2.circle(image, point(0, 0), int(radius), skin, -1, cv2.LINE_AA)
    for side in (-1, 1):
        inner_y, outer_y = feature["brows"][0 if side < 0 else 1]
        cv2.line(image, point(side * 0.12, jitter(inner_y)), point(side * 0.58, jitter(outer_y)), ink, stroke, cv2.LINE_AA)
        eye_r = max(1, int(jitter(feature["eye"], 0.015) * radius))
        cv2.circle(image, point(side * 0.35, -0.18), eye_r, ink, -1, cv2.LINE_AA)

    kind, a, b = feature["mouth"]
    mouth_y = jitter(0.45)
    if kind == "oval":
        axes = (max(1, int(jitter(a, 0.03) * radius)), max(1, int(jitter(b, 0.02) * radius)))
        cv2.ellipse(image, point(0, mouth_y), axes, 0, 0, 360, ink, stroke, cv2.LINE_AA)
    else:
        half_width = jitter(b, 0.04)
        xs = np.linspace(-half_width, half_width, 24)
        if kind == "curve":
            ys = mouth_y + jitter(a, 0.03) * (1 - (xs / half_width) ** 2)
        else:  # a wavy, lopsided mouth
            ys = mouth_y + 0.07 * np.sin(3 * np.pi * xs / half_width) + 0.12 * xs
        points = np.array([point(x, y) for x, y in zip(xs, ys)], np.int32)
        cv2.polylines(image, [points], False, ink, stroke, cv2.LINE_AA)

    angle = rng.uniform(-12, 12)
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    image = cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
    image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    image += rng.normal(0, rng.uniform(3, 12), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def class_counts(total: int) -> dict[str, int]:
    return {name: max(8, int(round(total * FER_TRAIN_SHARE[name]))) for name in FER_CLASSES}


def make_smiley_dataset(root: str | Path, train_images: int = 700, test_images: int = 140, seed: int = 0) -> Path:
    """Write train/<class>/Training_*.jpg and test/<class>/{PublicTest,PrivateTest}_*.jpg."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    plan = [("train", "Training", train_images), ("test", "PublicTest", test_images // 2),
            ("test", "PrivateTest", test_images - test_images // 2)]
    serial = 0
    for folder, prefix, total in plan:
        for name, count in class_counts(total).items():
            target = root / folder / name
            target.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                serial += 1
                cv2.imwrite(str(target / f"{prefix}_{serial:06d}.jpg"), draw_smiley(name, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root
