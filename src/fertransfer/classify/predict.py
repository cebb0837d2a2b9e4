"""Classifying the faces in an image, a folder of images or a video.

Faces are found with MTCNN (facenet-pytorch, weights shipped inside the package), cut out
as squares, converted to the classifier's channels and size, and classified. The output
is an annotated copy of each input (boxes with the label and its probability) and one CSV
row per face: source, frame, box, detector score, label, probability of every class.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertransfer.data.images import MAX_PIXELS, fit_square, is_image_file, read_image, to_channels, write_jpeg
from fertransfer.errors import StageError
from fertransfer.expression.models import Classifier, predict_labels
from fertransfer.progress import progress

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels
    score: float  # detector confidence


class FaceDetector:
    """The extract stage's MTCNN detector, mapping one RGB frame to a list of Face."""

    def __init__(self, min_score: float = 0.9, min_size: int = 20, device: str = "cpu"):
        from fertransfer.extract.detect import FaceDetector as BatchDetector

        self.detector = BatchDetector(min_face_size=min_size, device=device)
        self.min_score = min_score

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        [found] = self.detector.detect([rgb])
        h, w = rgb.shape[:2]
        faces = []
        for box, score in zip(found.boxes, found.probs):
            if score < self.min_score:
                continue
            x1, y1, x2, y2 = box
            faces.append(Face((max(0, int(x1)), max(0, int(y1)), min(w, int(x2)), min(h, int(y2))), float(score)))
        return faces


def whole_image(rgb: np.ndarray) -> list[Face]:
    """The 'detector' for inputs that are already face crops."""
    return [Face((0, 0, rgb.shape[1], rgb.shape[0]), 1.0)]


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], channels: int, size: int) -> np.ndarray:
    """A square around the box (its longer side), clipped to the frame, at the model's size and channels."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 1)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    top, left = max(0, cy - side // 2), max(0, cx - side // 2)
    patch = rgb[top : top + side, left : left + side]
    return fit_square(to_channels(patch, channels), size)


@dataclass
class FacePrediction:
    """One face found in an image and what the classifier says about it."""

    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels
    score: float  # detector confidence
    label: int  # index into the classifier's classes
    probabilities: np.ndarray  # one per class, in the classifier's order


def predict_image(classifier: Classifier, rgb: np.ndarray, detector: Callable[[np.ndarray], list[Face]]) -> list[FacePrediction]:
    """Every face in one RGB uint8 image with its class probabilities.

    The one path from pixels to labels: `pipeline predict` calls it per image or video frame,
    `pipeline serve` per camera frame or upload.
    """
    faces = detector(rgb)
    if not faces:
        return []
    crops = np.stack([crop_face(rgb, f.box, classifier.channels, classifier.size) for f in faces])
    labels, probs = predict_labels(classifier, crops)
    return [FacePrediction(f.box, f.score, int(label), p) for f, label, p in zip(faces, labels, probs)]


def annotate(rgb: np.ndarray, predictions: list[FacePrediction], classes: list[str]) -> np.ndarray:
    out = rgb.copy()
    scale = max(0.4, min(rgb.shape[:2]) / 600)
    for face in predictions:
        x1, y1, x2, y2 = face.box
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 220, 0), max(1, int(2 * scale)))
        text = f"{classes[face.label]} {face.probabilities[face.label]:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), (0, 220, 0), -1)
        cv2.putText(out, text, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def check_classes(classifier: Classifier, expected: list[str], model_path: Path) -> None:
    if list(classifier.classes) != list(expected):
        raise StageError(
            f"{model_path}: the model was trained on the classes [{', '.join(classifier.classes)}], "
            f"not the expected [{', '.join(expected)}]; pass --classes {' '.join(classifier.classes)} to use it"
        )


def load_checked_classifier(model: str | Path, classes: list[str] | None = None, device: str = "cpu",
                            own_classes: bool = False) -> Classifier:
    """The model behind `--model`, refused (StageError) unless it has `classes` (default: FER2013's;
    `own_classes`: whatever it was trained on, e.g. a run's person model)."""
    from fertransfer.data import class_set
    from fertransfer.expression.models import find_model, load_classifier

    model_path = find_model(Path(model))
    classifier = load_classifier(model_path, device=device)
    if not own_classes:
        check_classes(classifier, list(class_set(classes).names), model_path)
    return classifier


def _ffmpeg_reason(error: Exception) -> str:
    """ffmpeg's many lines of banner and noise cut to the one that says what is wrong; all of it at debug."""
    log.debug("ffmpeg: %s", error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if "error" in line.lower() or "invalid" in line.lower()]
    return (useful or lines or [type(error).__name__])[-1][:200]


def open_video(path: Path, max_pixels: int = MAX_PIXELS):
    """An imageio reader and the video's frames per second; raises StageError with one line naming the
    file, also for frames over max_pixels (refused from the container's size, before decoding)."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(path)
        meta = reader.get_meta_data()
    except Exception as error:  # noqa: BLE001 - imageio raises several types for unreadable videos
        raise StageError(f"{path}: cannot read the video ({_ffmpeg_reason(error)})") from None
    width, height = meta.get("size") or (0, 0)
    if width * height > max_pixels:
        reader.close()
        raise StageError(f"{path}: frames of {width}x{height} px are over the limit of {max_pixels:,} pixels "
                         f"(fertransfer.data.images.MAX_PIXELS); refused before decoding")
    return reader, float(meta.get("fps", 25.0))


def _video_frames(reader, path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """Every `every`th frame; a video that breaks off midway ends there, with a warning naming it."""
    with reader:
        index = -1
        try:
            for index, frame in enumerate(reader):
                if index % every == 0:
                    yield index, np.asarray(frame)[..., :3]
        except Exception as error:  # noqa: BLE001 - a damaged stream: keep what was read
            log.warning("%s: the video breaks off after frame %d (%s)", path, index, _ffmpeg_reason(error))


def list_inputs(path: Path) -> tuple[str, list[Path]]:
    """("video" | "images", files); raises StageError for a missing or empty input."""
    if not path.exists():
        raise StageError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p) and not p.name.startswith("."))
        if not files:
            raise StageError(f"{path}: no images in this folder")
        return "images", files
    if path.stat().st_size == 0:
        raise StageError(f"{path}: empty file")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", [path]
    if is_image_file(path):
        return "images", [path]
    raise StageError(f"{path}: not an image, a folder of images or a video ({', '.join(sorted(VIDEO_SUFFIXES))})")


def _timeline(video: Path, largest: dict[int, np.ndarray], fps: float, frames: int, classes: list[str],
              out_dir: Path, model: str) -> Path:
    """The timeline PNG of a predicted video (the drawing the classify stage makes of the footage)."""
    from .timeline import plot_timeline

    order = sorted(largest)
    probabilities = np.array([largest[f] for f in order]) if order else np.zeros((0, len(classes)))
    title = f"{video.name}: expression probabilities of the largest face over time ({model}; {len(order)} frames with a face)"
    return plot_timeline(np.array(order, float) / fps, probabilities, classes, out_dir / f"timeline_{video.stem}.png",
                         title, duration=frames / fps)


def predict(
    input_path: Path, classifier: Classifier, out_dir: Path, detector=None, every: int = 1,
) -> dict:
    """Classify every face in the input; write annotated copies and predictions.csv into out_dir, and
    for a video `timeline_<video>.png`: the probabilities of the largest face per frame over time.

    predictions.csv is written under a temporary name and renamed at the end, so a run that fails
    (a broken video, no readable image) leaves no header-only CSV behind."""
    kind, files = list_inputs(input_path)
    video = open_video(files[0]) if kind == "video" else None
    detector = detector or FaceDetector()
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(classifier.classes)
    csv_path = out_dir / "predictions.csv"
    partial = out_dir / ".predictions.csv.partial"
    counts = {"inputs": len(files), "frames": 0, "faces": 0, "unreadable": 0, "per_class": dict.fromkeys(classes, 0)}
    try:
        written = _predict_into(partial, kind, files, input_path, video, classifier, detector, out_dir, every, counts)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(csv_path)
    counts["csv"] = csv_path.name
    counts["annotated"] = written if len(written) <= 20 else f"{len(written)} files"
    return counts


def _predict_into(csv_path: Path, kind: str, files: list[Path], input_path: Path, video, classifier: Classifier,
                  detector, out_dir: Path, every: int, counts: dict) -> list[str]:
    """predict's loop: rows into csv_path, annotated copies into out_dir; returns the annotated names."""
    from fertransfer.paths import unique_names

    classes = list(classifier.classes)
    written: list[str] = []
    largest: dict[int, np.ndarray] = {}  # video frame -> probabilities of its largest face
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "frame", "x1", "y1", "x2", "y2", "face_score", "label", *[f"p_{c}" for c in classes]])

        def record(source: str, frame: int, rgb: np.ndarray) -> np.ndarray:
            faces = predict_image(classifier, rgb, detector)
            counts["frames"] += 1
            counts["faces"] += len(faces)
            for face in faces:
                label = classes[face.label]
                counts["per_class"][label] += 1
                writer.writerow([source, frame, *face.box, f"{face.score:.4f}", label,
                                 *[f"{v:.4f}" for v in face.probabilities]])
            if faces:
                largest[frame] = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).probabilities
            return annotate(rgb, faces, classes)

        if kind == "video":
            import imageio.v2 as imageio

            reader, fps = video
            source = files[0]
            target = out_dir / f"{source.stem}_annotated.mp4"
            try:
                with imageio.get_writer(target, fps=fps / every, codec="libx264", quality=7, macro_block_size=16) as out:
                    for index, rgb in progress(_video_frames(reader, source, every), desc=source.name, mininterval=5):
                        out.append_data(record(source.name, index, rgb))
            finally:
                if counts["frames"] == 0:
                    target.unlink(missing_ok=True)
            if counts["frames"] == 0:
                raise StageError(f"{source}: the video has no readable frames")
            written.append(target.name)
            counts["timeline"] = _timeline(source, largest, fps, every * counts["frames"], classes,
                                           out_dir, getattr(classifier, "engine", "model")).name
        else:
            root = input_path if input_path.is_dir() else input_path.parent
            relatives = [file.relative_to(root) for file in files]
            # The whole source name goes into the output's: a.jpg and a.png give a_jpg_ and a_png_annotated.jpg.
            names = unique_names(["__".join(r.parts).replace(".", "_") + "_annotated.jpg" for r in relatives])
            first_error = ""
            for file, relative, name in progress(list(zip(files, relatives, names)), desc="images", mininterval=5,
                                                 disable=len(files) < 20):
                try:
                    rgb = read_image(file, channels=3)
                except Exception as error:  # noqa: BLE001 - one bad file must not stop the rest
                    log.warning("skipped %s", error)
                    counts["unreadable"] += 1
                    first_error = first_error or str(error)
                    continue
                write_jpeg(out_dir / name, record(str(relative), 0, rgb))
                written.append(name)
            if counts["frames"] == 0:
                raise StageError(first_error if len(files) == 1 else
                                 f"{input_path}: none of the {len(files)} image(s) could be read, first: {first_error}")
    return written
