"""The extract stage: MTCNN face crops from videos and image folders."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertransfer.extract.align import alignment_matrix, eye_angle, transform_points
from fertransfer.extract.filters import DuplicateFilter, perceptual_hash, sharpness
from fertransfer.extract.options import ExtractOptions
from fertransfer.extract.stage import CSV_COLUMNS, run
from fertransfer.extract.track import assign_tracks, iou_matrix, person_tracks
from fertransfer.extract.video import FrameSampler
from fertransfer.pipelines.options import RunOptions
from fertransfer.pipelines.stage import StageContext, StageError

# Everything off that would drop crops of the demo video for reasons other than "no face".
NO_FILTERS = dict(min_probability=0.0, min_face_px=0, min_sharpness=0.0, dedupe_hash_distance=-1)


def make_context(tmp_path: Path, **options) -> StageContext:
    return StageContext(
        name="extract",
        options=ExtractOptions(**options),
        run=RunOptions(device="cpu"),
        run_dir=tmp_path,
        out_dir=tmp_path / "extract.partial",
        artifacts={},
        config_dir=tmp_path,
        log=logging.getLogger("fertransfer.extract"),
    )


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    """24 frames, the face visible throughout."""
    from fertransfer.demo.video import DemoVideoSpec, make_demo_video

    return make_demo_video(tmp_path_factory.mktemp("short") / "short.mp4", DemoVideoSpec(frames=24, no_face=(2.0, 2.0)))


# --- plain parts -----------------------------------------------------------------------


def test_sampler_every_n_and_target_fps():
    every_third = FrameSampler(fps=25, every_n=3)
    assert [i for i in range(10) if every_third.take(i)] == [0, 3, 6, 9]
    two_per_second = FrameSampler(fps=25, target_fps=2)
    assert [i for i in range(60) if two_per_second.take(i)] == [0, 13, 25, 38, 50]


def test_area_resample_equals_torch_area_interpolation():
    import torch
    from torch.nn.functional import interpolate

    from fertransfer.extract.mtcnn_fast import area_resample, integral_images

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 67, 91, 3), dtype=np.uint8)
    integral = integral_images(frames)
    regions = [(0, 5, 7, 40, 33), (1, 0, 0, 67, 91), (1, 20, 50, 13, 41)]
    for image, y0, x0, h, w in regions:
        for size in ((24, 24), (48, 48), (9, 13)):
            ours = area_resample(integral, np.array([image]), np.array([y0]), np.array([x0]), np.array([h]), np.array([w]), size)
            crop = torch.from_numpy(frames[image, y0 : y0 + h, x0 : x0 + w]).permute(2, 0, 1)[None].float()
            expected = interpolate(crop, size=size, mode="area").numpy()
            np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_pyramid_starts_on_a_default_level():
    from fertransfer.extract.detect import pyramid_face_size

    assert pyramid_face_size(12) == 12 and pyramid_face_size(20) == 20
    assert pyramid_face_size(80) == pytest.approx(20 / 0.709**4)
    assert pyramid_face_size(79.2) == pytest.approx(20 / 0.709**4)
    assert pyramid_face_size(79.0) == pytest.approx(20 / 0.709**3)


def test_fast_detector_gives_facenet_pytorchs_boxes(short_video):
    """The batched integral-image cascade, starting its pyramid at 40 px faces, finds the same
    boxes, landmarks and probabilities as facenet-pytorch's default detect() on these faces."""
    import torch
    from facenet_pytorch import MTCNN

    from fertransfer.extract.detect import FaceDetector

    capture = cv2.VideoCapture(str(short_video))
    frames = []
    for _ in range(4):
        ok, frame = capture.read()
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    frames = np.stack(frames)
    plain = MTCNN(keep_all=True, device="cpu")
    found = FaceDetector(min_face_size=40).detect(frames)
    with torch.no_grad():
        for frame, ours in zip(frames, found):
            boxes, probs, points = plain.detect(frame, landmarks=True)
            assert len(ours) == len(boxes) == 1
            np.testing.assert_allclose(ours.boxes, np.asarray(boxes, np.float32), atol=0.01)
            np.testing.assert_allclose(ours.landmarks, np.asarray(points, np.float32), atol=0.01)
            np.testing.assert_allclose(ours.probs, np.asarray(probs, np.float32), atol=1e-4)


def test_alignment_levels_the_eyes():
    box = np.array([100, 100, 200, 220], np.float32)
    landmarks = np.array([[130, 140], [170, 160], [150, 175], [135, 195], [165, 205]], np.float32)
    assert eye_angle(landmarks) == pytest.approx(26.565, abs=1e-3)
    matrix = alignment_matrix(box, landmarks, margin=0.2, side=128)
    moved = transform_points(matrix, landmarks)
    assert eye_angle(moved) == pytest.approx(0.0, abs=1e-6)
    centre = transform_points(matrix, np.array([[150.0, 160.0]]))[0]
    np.testing.assert_allclose(centre, [64, 64], atol=1e-6)


def test_tracks_follow_overlap_and_person_joins_a_returning_face():
    a = np.array([[0, 0, 10, 10.0]])
    shifted = np.array([[1, 0, 11, 10.0]])
    other = np.array([[50, 50, 60, 60.0]])
    elsewhere = np.array([[80, 0, 90, 10.0]])
    frames = [a, np.vstack([shifted, other]), np.vstack([shifted, other]), np.zeros((0, 4)), elsewhere, elsewhere]
    ids = assign_tracks(frames, times=[0, 1, 2, 3, 4, 5], min_iou=0.3, max_gap_s=10)
    assert [list(i) for i in ids] == [[0], [0, 1], [0, 1], [], [2], [2]]
    # Track 1 is on screen with track 0: someone else. Track 2 never is: the person back.
    assert person_tracks(ids) == {0, 2}
    assert iou_matrix(a, shifted)[0, 0] == pytest.approx(90 / 110)


def test_filters_sharpness_and_duplicates():
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    assert sharpness(blurred) < sharpness(sharp) / 10
    duplicates = DuplicateFilter(max_distance=4)
    duplicates.add(perceptual_hash(sharp))
    assert duplicates.is_duplicate(perceptual_hash(np.clip(sharp.astype(int) + 3, 0, 255).astype(np.uint8)))
    assert not duplicates.is_duplicate(perceptual_hash(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    assert not DuplicateFilter(max_distance=-1).is_duplicate(perceptual_hash(sharp))


# --- real MTCNN runs -----------------------------------------------------------------------


def test_demo_video_through_the_runner(tmp_path, demo_video):
    """Crops for the frames that show the face, none for the slide; eyes level; manifest."""
    from fertransfer.demo.video import DemoVideoSpec, face_visible
    from fertransfer.extract.detect import FaceDetector
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_stage

    shutil.copy(demo_video, tmp_path / "lecture.mp4")
    options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in NO_FILTERS.items())
    (tmp_path / "pipeline.toml").write_text(
        # box framing levels the eyes exactly (checked below); fer framing fits all five landmarks.
        f'[run]\ndir = "run"\ndevice = "cpu"\n[extract]\ninputs = ["lecture.mp4"]\nmin_face_size = 40\nevery_n = 2\n'
        f'framing = "box"\n{options}\n'
    )
    run_stage(load_config(tmp_path / "pipeline.toml"), "extract")
    out = tmp_path / "run" / "extract"
    summary = json.loads((out / "manifest.json").read_text())["summary"]

    with open(out / "faces.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    spec = DemoVideoSpec(frames=96)
    sampled = list(range(0, 96, 2))
    frames_with_crop = {int(r["frame"]) for r in rows}
    visible = {i for i in sampled if face_visible(i, spec)}
    assert frames_with_crop <= visible, "a crop from the stretch that shows only a slide"
    assert len(frames_with_crop) >= 0.95 * len(visible)

    files = sorted(p.name for p in (out / "faces").iterdir())
    assert files == sorted(r["file"] for r in rows)
    assert files[0] == "lecture_000000.jpg"
    totals = summary["totals"]
    assert totals["frames_read"] == 96 and totals["frames_sampled"] == 48
    assert totals["kept"] == len(rows) == totals["frames_with_face"] - 0
    assert totals["other_faces"] == 0 and sum(totals["filtered"].values()) == 0
    assert (out / "samples.png").is_file()

    crops = np.stack([cv2.cvtColor(cv2.imread(str(out / "faces" / f)), cv2.COLOR_BGR2RGB) for f in files[::4]])
    assert crops.shape[1:] == (128, 128, 3)
    found = FaceDetector(min_face_size=40).detect(crops)
    angles = [abs(eye_angle(d.landmarks[0])) for d in found if len(d)]
    assert len(angles) >= 0.9 * len(crops)
    assert max(angles) < 2.0, f"eyes not level after alignment: {max(angles):.2f} degrees"
    tilts = [abs(float(r["eye_angle"])) for r in rows]
    assert max(tilts) > 3.0, "the demo head tilts; the recorded angle before alignment should show it"


def test_bad_videos_are_reported_and_others_still_processed(tmp_path, short_video, caplog):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    data = short_video.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    # With the index at the front (faststart) a cut-off file still opens and ends early.
    import subprocess

    import imageio_ffmpeg

    faststart = tmp_path / "faststart.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(short_video), "-c", "copy",
         "-movflags", "+faststart", str(faststart)],
        check=True,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 6 // 10])
    garbage = tmp_path / "garbage.mov"
    garbage.write_bytes(b"not a video at all" * 100)
    good = tmp_path / "good.mp4"
    shutil.copy(short_video, good)
    inputs = ["missing.mp4", str(empty), str(truncated), str(cut), str(garbage), str(good)]
    ctx = make_context(tmp_path, inputs=inputs, min_face_size=40, **NO_FILTERS)
    with caplog.at_level(logging.WARNING):
        summary = run(ctx)
    for bad in ("missing.mp4", "empty.mp4", "garbage.mov"):
        assert any(bad in m for m in caplog.messages), f"no warning names {bad}"
        assert summary["inputs"][str(tmp_path / bad)]["status"] == "failed"
    truncated_status = summary["inputs"][str(truncated)]["status"]
    assert truncated_status in ("failed", "truncated")
    assert any("truncated.mp4" in m for m in caplog.messages)
    cut_counts = summary["inputs"][str(cut)]
    assert cut_counts["status"] == "truncated" and 0 < cut_counts["frames_read"] < 24
    assert any("cut.mp4" in m and "ended after" in m for m in caplog.messages)
    assert summary["totals"]["truncated_inputs"] == 1
    assert summary["inputs"][str(good)]["kept"] == 24
    assert summary["totals"]["failed_inputs"] >= 3
    assert len(list((ctx.out_dir / "faces").glob("good_*.jpg"))) == 24


def test_a_folder_of_videos_is_each_video(tmp_path, short_video):
    # Tried as a lecturer's recordings: a folder of mp4s used to be read as a folder of images,
    # "skipped 2 files that are not images", and extract failed with "no face found".
    folder = tmp_path / "lectures"
    folder.mkdir()
    for name in ("monday.mp4", "tuesday.mp4"):
        shutil.copy(short_video, folder / name)
    ctx = make_context(tmp_path, inputs=["lectures"], min_face_size=40, **NO_FILTERS)
    summary = run(ctx)
    assert sorted(summary["inputs"]) == [str(folder / "monday.mp4"), str(folder / "tuesday.mp4")]
    assert all(counts["kept"] == 24 for counts in summary["inputs"].values())


def test_image_folder_skips_non_images(tmp_path, short_video, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    capture = cv2.VideoCapture(str(short_video))
    for i in range(3):
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"photo{i}.jpg"), frame)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ctx = make_context(tmp_path, inputs=["photos"], min_face_size=40, **NO_FILTERS)
    with caplog.at_level(logging.WARNING):
        summary = run(ctx)
    counts = summary["inputs"][str(folder)]
    assert counts["skipped_files"] == 1 and counts["unreadable_images"] == 1
    assert counts["kept"] == 3
    assert sorted(p.name for p in (ctx.out_dir / "faces").iterdir()) == [f"photos_photo{i}.jpg" for i in range(3)]
    assert any("notes.txt" in m for m in caplog.messages) and any("broken.jpg" in m for m in caplog.messages)


def test_no_face_anywhere_is_an_error(tmp_path):
    from fertransfer.demo.video import DemoVideoSpec, make_demo_video

    slides = make_demo_video(tmp_path / "slides.mp4", DemoVideoSpec(frames=12, no_face=(0.0, 2.0)))
    ctx = make_context(tmp_path, inputs=[str(slides)], min_face_size=40)
    with pytest.raises(StageError, match="no face found"):
        run(ctx)


def test_missing_input_is_caught_before_running(tmp_path):
    from fertransfer.pipelines.config import ConfigError, load_config
    from fertransfer.pipelines.runner import run_pipeline

    (tmp_path / "pipeline.toml").write_text('[extract]\ninputs = ["nowhere/*.mp4"]\n')
    with pytest.raises(ConfigError, match="nowhere"):
        run_pipeline(load_config(tmp_path / "pipeline.toml"), "extract")


@pytest.mark.realdata
def test_speaker_a_every_frame_one_face(tmp_path, shared_data):
    video = shared_data / "videos" / "speaker_a.mp4"
    ctx = make_context(tmp_path, inputs=[str(video)], **NO_FILTERS)
    summary = run(ctx)
    counts = summary["inputs"][str(video)]
    with open(ctx.out_dir / "faces.csv") as handle:
        rows = list(csv.DictReader(handle))
    frames = counts["frames_read"]
    assert frames == counts["frames_sampled"] == 200
    assert counts["faces_detected"] - counts["other_faces"] == len(rows)
    assert counts["frames_with_one_face"] >= 0.99 * frames
    crop = cv2.imread(str(ctx.out_dir / "faces" / rows[0]["file"]))
    assert crop.shape == (128, 128, 3)


def test_failed_inputs_are_named_at_the_end_and_strict_makes_them_an_error(tmp_path, short_video, capsys):
    """Three unreadable inputs of four: the run succeeds but says so (output, status, report);
    with strict = true it fails and the stage is not done."""
    from fertransfer.pipelines.cli import main

    shutil.copy(short_video, tmp_path / "good.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mov").write_bytes(b"not a video at all" * 100)
    (tmp_path / "noise.mp4").write_bytes(bytes(range(256)) * 8)
    inputs = '["good.mp4", "empty.mp4", "garbage.mov", "noise.mp4"]'
    options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in NO_FILTERS.items())
    text = f'[run]\ndir = "run"\ndevice = "cpu"\n[extract]\ninputs = {inputs}\nmin_face_size = 40\nevery_n = 6\n{options}\n'
    config = str(tmp_path / "pipeline.toml")
    (tmp_path / "pipeline.toml").write_text(text)
    assert main(["run", "extract", "--config", config]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("extract: 3 inputs failed")]
    assert all(name in line for name in ("empty.mp4", "garbage.mov", "noise.mp4")) and "good.mp4" not in line
    assert main(["status", "--config", config]) == 0
    assert "extract   done, 3 inputs failed" in capsys.readouterr().out
    page = (tmp_path / "run" / "report.html").read_text()
    assert "3 inputs failed (skipped)" in page and "garbage.mov" in page

    (tmp_path / "pipeline.toml").write_text(text + "strict = true\n")
    assert main(["run", "extract", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "3 of 4 inputs could not be read ([extract].strict = true)" in err and "noise.mp4" in err
    assert main(["status", "--config", config]) == 0
    assert "extract   stale (changed: config)" in capsys.readouterr().out


def test_no_readable_input_says_so_rather_than_blaming_face_size(tmp_path):
    (tmp_path / "garbage.mov").write_bytes(b"not a video at all" * 100)
    ctx = make_context(tmp_path, inputs=["garbage.mov", "missing.mp4"], min_face_size=40)
    with pytest.raises(StageError, match="none of the 2 inputs could be read") as error:
        run(ctx)
    assert "min_face_size" not in str(error.value)
