"""What the person model predicts over the person's footage (the extract stage's faces).

Footage has no labels, so nothing here says whether a prediction is right: it shows what the
model sees (how often each expression, and when, per video), beside the plain statement in the
report that the person's accuracy cannot be measured.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from fertransfer.data import read_images
from fertransfer.errors import StageError
from fertransfer.expression.models import Classifier, predict_labels
from fertransfer.progress import progress

from .timeline import plot_distribution, plot_timeline

FOOTAGE_DIR = "footage"  # folder inside the classify stage's output
BATCH = 512


def footage_rows(table: Path, faces: Path) -> list[dict]:
    """The footage rows of extract's faces.csv (not the held-out test crops), each with its crop's
    path in `faces`."""
    if not table.is_file():
        raise StageError(f"{table}: no such face table (the extract stage's faces.csv)")
    with open(table, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("split", "footage") in ("", "footage")]
    for row in rows:
        row["path"] = str(faces / row["file"])
    return rows


def _stems(videos: list[str]) -> dict[str, str]:
    """A file-name stem per video, unique even when two videos share a name."""
    stems: dict[str, str] = {}
    used: Counter = Counter()
    for video in videos:
        stem = Path(video).stem or "video"
        used[stem] += 1
        stems[video] = stem if used[stem] == 1 else f"{stem}_{used[stem]}"
    return stems


def read_footage(classifier: Classifier, table: Path, faces: Path,
                 keep_images: bool = False) -> tuple[list[dict], np.ndarray, np.ndarray | None]:
    """The footage rows of `table` (extract's faces.csv, crops in `faces`), the classifier's
    probabilities for each, and with `keep_images` the crops at its input (else None); read and
    predicted in batches, so that long footage shows progress."""
    rows = footage_rows(table, faces)
    probabilities, images, kept = [], [], []
    for start in progress(range(0, len(rows), BATCH), desc="footage faces", unit="batch", disable=len(rows) <= BATCH):
        chunk = rows[start:start + BATCH]
        batch, ok, errors = read_images([r["path"] for r in chunk], channels=classifier.channels, size=classifier.size)
        if errors:
            raise StageError(f"{faces}: {len(errors)} face crop(s) unreadable, e.g. {errors[0]}")
        probabilities.append(predict_labels(classifier, batch)[1])
        images += [batch] if keep_images else []
        kept += [chunk[i] for i in ok]
    classes = len(classifier.classes)
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, classes), np.float32)
    return kept, probs, (np.concatenate(images) if images else None)


def predict_footage(classifier: Classifier, table: Path, faces: Path, out_dir: Path, model_name: str) -> dict:
    """predictions.csv, distribution.png and timeline_<video>.png in `out_dir` for the footage faces
    that `table` (extract's faces.csv) lists in `faces`; returns the summary."""
    kept, probs, _ = read_footage(classifier, table, faces)
    if not kept:
        return {"faces": 0, "note": f"{table} lists no footage faces"}
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(classifier.classes)
    labels = probs.argmax(axis=1)
    with open(out_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "video", "frame", "time_s", "label", *[f"p_{c}" for c in classes]])
        for row, label, p in zip(kept, labels, probs):
            writer.writerow([row["file"], row["video"], row["frame"], row["time_s"], classes[label],
                             *[f"{v:.4f}" for v in p]])
    counts = dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist()))
    plot_distribution(counts, out_dir / "distribution.png",
                      f"predicted expressions over {len(kept)} faces of the footage (model: {model_name})")
    videos = list(dict.fromkeys(r["video"] for r in kept))
    stems = _stems(videos)
    per_video, pictures = {}, [f"{FOOTAGE_DIR}/distribution.png"]
    for video in videos:
        index = [i for i, r in enumerate(kept) if r["video"] == video]
        times = np.array([float(kept[i]["time_s"] or 0) for i in index])
        picture = f"timeline_{stems[video]}.png"
        plot_timeline(times, probs[index], classes, out_dir / picture,
                      f"{Path(video).name}: expression probabilities over time (model: {model_name}; no labels)")
        video_labels = labels[index]
        per_video[stems[video]] = {"video": video, "faces": len(index),
                                       "most_predicted": classes[int(np.bincount(video_labels).argmax())],
                                       "timeline": f"{FOOTAGE_DIR}/{picture}"}
        pictures.append(f"{FOOTAGE_DIR}/{picture}")
    return {"faces": len(kept), "model": model_name, "per_class": counts,
            "share": {c: round(n / len(kept), 4) for c, n in counts.items()},
            "videos": per_video, "csv": f"{FOOTAGE_DIR}/predictions.csv", "pictures": pictures}
