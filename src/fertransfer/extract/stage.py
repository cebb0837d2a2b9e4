"""`pipeline run extract`: one person's faces from videos and image folders, with MTCNN.

Writes into the stage folder:
  faces/<video stem>_<frame>.jpg   aligned RGB face crops, the footage (the cyclegan stage's domain A)
  person_test/<class>/<video stem>_<frame>.jpg
                                   the held-out end of each labelled clip ([extract] holdout): the
                                   person's labelled test set, in the flat class-folder layout
  faces.csv                        one row per crop: source, frame, time, box, landmarks, label, split, ...
  samples.png                      a grid of some footage crops, to look at

A labelled input is a folder of class folders, root/<class>/*.mp4 (or images, one clip per class
folder in name order); its crops carry the class as their label. Class folders outside the
configured classes (MEAD's contempt) are unlabelled footage.
"""

from __future__ import annotations

import csv
import glob
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from fertransfer.data.classes import ClassSet, class_set
from fertransfer.errors import StageError
from fertransfer.options import out_of_range
from fertransfer.pipelines.stage import Stage, StageContext

from .options import VIDEO_SUFFIXES, ExtractOptions

CSV_COLUMNS = (
    "file", "video", "frame", "time_s", "x1", "y1", "x2", "y2", "probability",
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y",
    "mouth_left_x", "mouth_left_y", "mouth_right_x", "mouth_right_y",
    "eye_angle", "sharpness", "track", "landmark_error", "label", "split",
)
FOOTAGE, TEST = "footage", "test"
TEST_DIR = "person_test"


def option_problems(o: ExtractOptions) -> list[str]:
    """`key: why` for each bad value beyond the declared ranges (the runner checks those, and this,
    for every stage before any runs)."""
    problems = []
    if not o.inputs:
        problems.append("inputs: empty; list the videos, glob patterns or image folders to take faces from")
    if len(o.thresholds) != 3:
        problems.append(f"thresholds: expected three scores in [0, 1], got {o.thresholds}")
    if o.framing not in ("fer", "box"):
        problems.append(f"framing: expected fer or box, got {o.framing!r}")
    try:
        class_set(o.classes)
    except ValueError as error:
        problems.append(f"classes: {error}")
    return problems


def check_options(o: ExtractOptions) -> None:
    problems = out_of_range(o) + option_problems(o)
    if problems:
        raise StageError("[extract] " + "; ".join(problems))


def expand_inputs(ctx: StageContext, patterns: list[str]) -> list[Path]:
    """Config inputs as paths, globs expanded (sorted), duplicates dropped, order kept."""
    paths: list[Path] = []
    for pattern in patterns:
        full = str(ctx.path(pattern))
        matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        for match in matches:
            path = Path(match)
            if path not in paths:
                paths.append(path)
    return paths


def resolve_device(requested: str) -> str:
    from fertransfer import devices

    try:
        return str(devices.resolve_device(requested))
    except ValueError as error:
        raise StageError(str(error)) from None


def unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem or path.name, 2
    name = stem
    while name in used:
        name, n = f"{stem}-{n}", n + 1
    used.add(name)
    return name


@dataclass
class Clip:
    """One input to take faces from: a video, or a folder of images (one frame each, in name
    order), with the class it shows when it comes from a labelled folder."""

    path: Path
    label: str = ""  # canonical class name; "" = unlabelled
    class_folder: str = ""  # its class folder's name in a labelled input


def is_labelled_folder(path: Path) -> bool:
    """root/<class>/...: a folder of subfolders and no images of its own."""
    from fertransfer.data.images import is_image_file

    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return any(p.is_dir() for p in entries) and not any(p.is_file() and is_image_file(p) for p in entries)


def folder_clips(folder: Path, label: str = "", class_folder: str = "") -> list[Clip]:
    """A folder's clips: each video, and its images as one clip (a folder of frames). A folder of
    a lecturer's recordings is as much an input as the recordings named one by one."""
    from fertransfer.data.images import is_image_file

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    clips = [Clip(p, label, class_folder) for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if any(is_image_file(p) for p in files):
        clips.append(Clip(folder, label, class_folder))
    return clips


def labelled_clips(root: Path, classes: ClassSet, log) -> tuple[list[Clip], list[str]]:
    """The clips of a root/<class>/ folder (each video; a class folder's images as one clip) and
    the class folders that are not among the classes, whose clips become unlabelled footage."""
    clips: list[Clip] = []
    unknown: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        index = classes.index(folder.name)
        label = "" if index is None else classes.names[index]
        if index is None:
            unknown.append(str(folder))
            log.warning("%s: class folder '%s' is not one of the classes (%s); its crops are unlabelled footage, "
                        "never test images", folder, folder.name, ", ".join(classes.names))
        found = folder_clips(folder, label, folder.name)
        if not found:
            log.warning("%s: no videos or images in class folder; skipped", folder)
        clips += found
    return clips, unknown


def new_counts() -> dict:
    from .core import FILTERS

    return {
        "frames_read": 0, "frames_sampled": 0, "frames_with_face": 0, "frames_with_one_face": 0, "faces_detected": 0,
        "other_faces": 0, "tracks": 0, "filtered": dict.fromkeys(FILTERS, 0), "kept": 0,
        "footage": 0, "test": 0, "gap_dropped": 0,
    }


def _split_and_filter(counts: dict, faces_per_frame: list, selection, frames: int, holdout: float, gap: int,
                      settings, duplicates) -> tuple[list, list]:
    """Split the person's faces in time, filter both parts, and record what happened in counts.

    Test faces skip the duplicate filter: a still face is still a test image of its class, the
    test set stays the same whatever dedupe_hash_distance is, and test crops never make
    footage crops duplicates (nor the reverse)."""
    from .core import apply_filters, merge_removed, split_in_time
    from .filters import DuplicateFilter

    parts = split_in_time(selection.chosen, frames, holdout, gap)
    footage = apply_filters(parts.footage, settings, duplicates)
    test = apply_filters(parts.test, settings, DuplicateFilter(-1))
    counts.update(
        frames_sampled=len(faces_per_frame),
        frames_with_face=sum(1 for f in faces_per_frame if f),
        frames_with_one_face=sum(1 for f in faces_per_frame if len(f) == 1),
        faces_detected=sum(len(f) for f in faces_per_frame),
        other_faces=selection.other_faces,
        filtered=merge_removed(footage, test),
        kept=len(footage.kept) + len(test.kept),
        footage=len(footage.kept),
        test=len(test.kept),
        gap_dropped=len(parts.gap),
    )
    return footage.kept, test.kept


def process_video(path: Path, ctx: StageContext, detector, framing, settings, duplicates,
                  holdout: float = 0.0) -> tuple[dict, list, list]:
    """Detect, crop, choose the person, split in time and filter in one video; returns its
    counts and kept footage and test faces."""
    from fertransfer.progress import progress

    from .core import choose_person, crop_faces
    from .detect import VideoFaceDetector
    from .video import FrameSampler, VideoError, open_video, read_batches

    o: ExtractOptions = ctx.options
    video_detector = VideoFaceDetector(detector, o.detect_every)  # its tracked faces belong to this video
    capture, info = open_video(str(path))
    counts = {**new_counts(), "fps": round(info.fps, 3), "frames_expected": info.frame_count,
              "width": info.width, "height": info.height, "status": "ok"}
    faces_per_frame = []
    timing = {"detect_s": 0.0, "crop_s": 0.0}
    started = time.perf_counter()
    sampler = FrameSampler(info.fps, o.every_n, o.target_fps)
    try:
        # closing(): the decoding thread stops before the capture is released, even on errors.
        batches = closing(read_batches(capture, sampler, o.batch_size))
        with batches, progress(total=info.frame_count or None, desc=path.name, unit="frame", leave=False) as bar:
            for batch in batches.thing:
                bar.update(batch.frames_read - bar.n)
                counts["frames_read"] = batch.frames_read
                if not batch.indices:
                    continue
                t0 = time.perf_counter()
                found = video_detector.detect(batch.frames)
                t1 = time.perf_counter()
                times = [i / info.fps for i in batch.indices]
                faces_per_frame += crop_faces(batch.frames, batch.indices, times, found, framing)
                timing["detect_s"] += t1 - t0
                timing["crop_s"] += time.perf_counter() - t1
    finally:
        capture.release()
    if counts["frames_read"] == 0:
        raise VideoError(f"{path}: no frame could be decoded (damaged or not a video)")
    # Containers state the frame count only roughly (from the duration) in some formats.
    if info.frame_count and counts["frames_read"] < 0.99 * info.frame_count - 1:
        counts["status"] = "truncated"
        ctx.log.warning("%s: ended after %d of %d frames (truncated or damaged); using the frames read",
                        path, counts["frames_read"], info.frame_count)
    selection = choose_person(faces_per_frame, o.person, o.track_iou, o.track_max_gap_s)
    footage, test = _split_and_filter(counts, faces_per_frame, selection, counts["frames_read"], holdout,
                                      o.holdout_gap, settings, duplicates)
    seconds = time.perf_counter() - started
    counts.update(
        tracks=selection.tracks,
        seconds=round(seconds, 3),
        frames_per_s=round(counts["frames_read"] / seconds, 2) if seconds else None,
        detect_s=round(timing["detect_s"], 3),
        crop_s=round(timing["crop_s"], 3),
        # frames detected fully, refined by O-Net from the frame before, and refined-then-redetected
        detection=dict(video_detector.counts),
    )
    return counts, footage, test


def process_folder(path: Path, ctx: StageContext, detector, framing, settings, duplicates,
                   holdout: float = 0.0) -> tuple[dict, list, list]:
    """Every image of a folder is one frame, in name order; the largest face of each is taken."""
    from fertransfer.data.images import UnreadableImage, is_image_file, read_image
    from fertransfer.progress import progress

    from .core import choose_person, crop_faces

    o: ExtractOptions = ctx.options
    # a folder's videos are clips of their own (folder_clips)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() not in VIDEO_SUFFIXES)
    images = [p for p in files if is_image_file(p)]
    counts = {**new_counts(), "status": "ok", "images": len(images), "skipped_files": len(files) - len(images),
              "unreadable_images": 0}
    if counts["skipped_files"]:
        others = [p.name for p in files if not is_image_file(p)]
        ctx.log.warning("%s: skipped %d files that are not images (%s%s)", path, len(others),
                        ", ".join(others[:3]), ", ..." if len(others) > 3 else "")
    started = time.perf_counter()
    faces_per_frame = []
    for index, file in enumerate(progress(images, desc=path.name, unit="image", leave=False)):
        try:
            image = read_image(file, channels=3)
        except UnreadableImage as error:
            ctx.log.warning("%s", error)
            counts["unreadable_images"] += 1
            continue
        counts["frames_read"] += 1
        faces = crop_faces(image[None], [index], [None], detector.detect(image[None]), framing)[0]
        for face in faces:
            face.source = file.name
        faces_per_frame.append(faces)
    selection = choose_person(faces_per_frame, "largest", o.track_iou, o.track_max_gap_s)
    footage, test = _split_and_filter(counts, faces_per_frame, selection, len(images), holdout, o.holdout_gap,
                                      settings, duplicates)
    counts["seconds"] = round(time.perf_counter() - started, 3)
    return counts, footage, test


def face_row(file_name: str, source: str, face, label: str = "", split: str = FOOTAGE) -> dict:
    x1, y1, x2, y2 = (round(float(v), 2) for v in face.box)
    row = {"file": file_name, "video": source, "frame": face.frame,
           "time_s": "" if face.time is None else round(face.time, 4),
           "x1": x1, "y1": y1, "x2": x2, "y2": y2, "probability": round(face.probability, 5)}
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    for name, (x, y) in zip(names, face.landmarks):
        row[f"{name}_x"], row[f"{name}_y"] = round(float(x), 2), round(float(y), 2)
    row.update(eye_angle=round(face.angle, 3), sharpness=round(face.sharpness, 2), track=face.track,
               landmark_error=round(face.landmark_error, 5), label=label, split=split)
    return row


def write_samples(path: Path, crops: list, count: int) -> None:
    """An evenly spaced selection of crops as one PNG grid."""
    import numpy as np
    import torch
    from torchvision.utils import make_grid

    from fertransfer.data.images import write_png

    picks = np.linspace(0, len(crops) - 1, num=min(count, len(crops))).round().astype(int)
    batch = torch.from_numpy(np.stack([crops[i] for i in picks])).permute(0, 3, 1, 2)
    grid = make_grid(batch, nrow=min(8, len(picks)), padding=2, pad_value=255)
    write_png(path, grid.permute(1, 2, 0).numpy())


def collect_clips(ctx: StageContext, classes: ClassSet) -> tuple[list[Clip], list[str]]:
    """The configured inputs as clips: labelled folders are opened into their class folders' clips."""
    clips: list[Clip] = []
    unknown: list[str] = []
    for path in expand_inputs(ctx, ctx.options.inputs):
        if path.is_dir() and is_labelled_folder(path):
            found, other = labelled_clips(path, classes, ctx.log)
            if not found:
                ctx.log.warning("%s: labelled folder without videos or images", path)
            clips += found
            unknown += other
        elif path.is_dir():
            clips += folder_clips(path) or [Clip(path)]  # an empty folder: reported as one without faces
        else:
            clips.append(Clip(path))
    return clips, unknown


def run(ctx: StageContext) -> dict:
    import torch

    from fertransfer.data.images import write_jpeg

    from .core import FilterSettings, Framing
    from .detect import FaceDetector
    from .filters import DuplicateFilter
    from .template import TEMPLATE_FILE, TemplateError, load_template
    from .video import VideoError

    o: ExtractOptions = ctx.options
    check_options(o)
    classes = class_set(o.classes)
    try:
        template = load_template()
    except TemplateError as error:
        raise StageError(str(error)) from None
    device = resolve_device(ctx.run.device)
    if o.threads > 0:
        torch.set_num_threads(o.threads)  # the runner restores the count after the stage
    detector = FaceDetector(o.min_face_size, tuple(o.thresholds), o.detect_max_side, device)
    framing = Framing(o.framing, o.crop_size, o.margin, template)
    settings = FilterSettings(o.min_probability, o.min_face_px, o.min_sharpness)
    duplicates = DuplicateFilter(o.dedupe_hash_distance)
    faces_dir = ctx.out_dir / "faces"
    faces_dir.mkdir(parents=True, exist_ok=True)
    ctx.log.info("detecting on %s with %d threads", device, torch.get_num_threads())

    started = time.perf_counter()
    per_input: dict[str, dict] = {}
    failed: list[str] = []
    no_face: list[str] = []
    rows: list[dict] = []
    sample_crops: list = []
    used_stems: set[str] = set()
    write_s = 0.0
    clips, unknown_folders = collect_clips(ctx, classes)
    for clip in clips:
        path = clip.path
        # Only labelled clips have a test part; unknown classes and plain footage are all footage.
        holdout = o.holdout if clip.label else 0.0
        try:
            if path.is_dir():
                counts, footage, test = process_folder(path, ctx, detector, framing, settings, duplicates, holdout)
            elif path.suffix.lower() in VIDEO_SUFFIXES or not path.exists():
                counts, footage, test = process_video(path, ctx, detector, framing, settings, duplicates, holdout)
            else:
                raise VideoError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) nor an image folder")
        except VideoError as error:
            ctx.log.warning("%s; skipped", error)
            failed.append(str(error))
            per_input[str(path)] = {"status": "failed", "error": str(error), "label": clip.label}
            continue
        counts.update(label=clip.label, class_folder=clip.class_folder)
        if counts["faces_detected"] == 0:
            ctx.log.warning("%s: no face found in %d frames; nothing taken from it", path, counts["frames_sampled"])
            no_face.append(str(path))
        t0 = time.perf_counter()
        stem = unique_stem(path, used_stems)
        for split, kept in ((FOOTAGE, footage), (TEST, test)):
            folder = faces_dir if split == FOOTAGE else ctx.out_dir / TEST_DIR / clip.label
            folder.mkdir(parents=True, exist_ok=True)
            for face in kept:
                name = f"{stem}_{Path(face.source).stem}.jpg" if face.source else f"{stem}_{face.frame:06d}.jpg"
                write_jpeg(folder / name, face.crop, o.jpeg_quality)
                rows.append(face_row(name, str(path), face, clip.label, split))
                if split == FOOTAGE:
                    sample_crops.append(face.crop)
        write_s += time.perf_counter() - t0
        per_input[str(path)] = counts
        ctx.log.info(
            "%s: %d frames read, %d sampled, %d with a face, %d kept (%d footage, %d test, %d in the gap)",
            path.name, counts["frames_read"], counts["frames_sampled"], counts["frames_with_face"], counts["kept"],
            counts["footage"], counts["test"], counts["gap_dropped"],
        )

    done = [c for c in per_input.values() if c["status"] != "failed"]
    totals = _totals(per_input, failed, no_face)
    _refuse_empty(totals, failed, len(done), len(per_input), o.strict)

    with open(ctx.out_dir / "faces.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    write_samples(ctx.out_dir / "samples.png", sample_crops, o.samples)

    def per_class(split: str) -> dict[str, int]:
        counted = {name: 0 for name in classes.names}
        for row in rows:
            if row["split"] == split and row["label"]:
                counted[row["label"]] += 1
        return counted

    errors = sorted(row["landmark_error"] for row in rows)
    seconds = time.perf_counter() - started
    detect_s = sum(c.get("detect_s", 0.0) for c in done)
    ctx.timings.update(detect_s=detect_s, write_s=write_s)
    if failed:
        ctx.log.warning("%d of %d inputs failed and were skipped: %s", len(failed), len(per_input), "; ".join(failed))
    return {
        "faces_dir": "faces",
        "person_test_dir": TEST_DIR if totals["test"] else None,
        "faces_csv": "faces.csv",
        "samples": "samples.png",
        "device": device,
        "threads": torch.get_num_threads(),
        "framing": o.framing,
        "template": TEMPLATE_FILE.name,
        "median_landmark_error": errors[len(errors) // 2],
        "totals": totals,
        "labels": {
            "classes": list(classes.names),
            "footage_per_class": per_class(FOOTAGE),
            "test_per_class": per_class(TEST),
            "holdout": o.holdout,
            "holdout_gap": o.holdout_gap,
            "unknown_class_folders": unknown_folders,
            "unlabelled_inputs": [p for p, c in per_input.items() if not c["label"]],
        },
        "inputs": per_input,
        "failed": failed,
        "no_face": no_face,
        "timings": {
            "seconds": round(seconds, 3),
            "detect_s": round(detect_s, 3),
            "write_s": round(write_s, 3),
            "frames_per_s": round(totals["frames_read"] / seconds, 2) if seconds else None,
        },
    }


def _totals(per_input: dict[str, dict], failed: list[str], no_face: list[str]) -> dict:
    """The manifest's counts over every input that could be read."""
    from .core import FILTERS

    done = [c for c in per_input.values() if c["status"] != "failed"]
    totals = {key: sum(c[key] for c in done) for key in
              ("frames_read", "frames_sampled", "frames_with_face", "frames_with_one_face", "faces_detected", "other_faces",
               "kept", "footage", "test", "gap_dropped")}
    totals["filtered"] = {name: sum(c["filtered"][name] for c in done) for name in FILTERS}
    totals.update(inputs=len(per_input), failed_inputs=len(failed), no_face_inputs=len(no_face),
                  truncated_inputs=sum(1 for c in done if c["status"] == "truncated"),
                  labelled_inputs=sum(1 for c in per_input.values() if c["label"]),
                  unlabelled_inputs=sum(1 for c in per_input.values() if not c["label"]))
    return totals


def _refuse_empty(totals: dict, failed: list[str], readable: int, inputs: int, strict: bool) -> None:
    """A StageError when the run found nothing usable (or, with `strict`, lost an input), naming why."""
    if failed and not readable:
        which = "the only input could not be read" if len(failed) == 1 else f"none of the {len(failed)} inputs could be read"
        raise StageError(f"{which} ({'; '.join(failed[:3])}"
                         f"{'; ...' if len(failed) > 3 else ''}); check [extract].inputs")
    if failed and strict:
        raise StageError(f"{len(failed)} of {inputs} inputs could not be read ([extract].strict = true): "
                         f"{'; '.join(failed[:3])}{'; ...' if len(failed) > 3 else ''}")
    if totals["faces_detected"] == 0:
        raise StageError(
            f"no face found in any input ({totals['frames_sampled']} frames sampled from {readable} inputs"
            f"{', ' + str(len(failed)) + ' unreadable' if failed else ''}); check [extract].inputs and min_face_size"
        )
    if totals["kept"] == 0:
        raise StageError(f"all {totals['faces_detected']} faces found were filtered out ({totals['filtered']}); relax the [extract] filters")
    if totals["footage"] == 0:
        raise StageError(f"no footage crops: all {totals['kept']} kept crops are test crops; lower [extract].holdout")


def _inputs(options: ExtractOptions) -> list[str]:
    return list(options.inputs)


STAGE = Stage(
    name="extract",
    options=ExtractOptions,
    run=run,
    outputs=("faces.csv",),
    description="extract: one person's aligned face crops from videos, with MTCNN",
    inputs=_inputs,
    check=lambda options, config_dir, data: option_problems(options),
    produces={"faces": "faces", "person_test": "person_test", "faces_table": "faces.csv"},
    demo={
        "inputs": ["data/lecture.mp4"],
        # The demo's face is 65-110 px high in a 384x288 frame.
        "min_face_size": 40,
        "min_face_px": 48,
        # 153 crops instead of 62 (2 bits dropped near-identical frames of the slow pan): a fifth of them,
        # 30, is held out for the person score, above its 20-crop warning (docs/results.md, session 27).
        "dedupe_hash_distance": 1,
    },
)
