"""The extract stage's FER-like framing, labelled class-folder inputs and the split in time."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertransfer.extract.align import eye_angle
from fertransfer.extract.stage import check_options, run
from fertransfer.extract.template import (
    TemplateError,
    landmark_error,
    load_template,
    similarity_transform,
    warp_face,
)
from fertransfer.pipelines.stage import StageError
from test_extract import NO_FILTERS, make_context, short_video  # noqa: F401  (the fixture)


def read_rows(out: Path) -> list[dict]:
    with open(out / "faces.csv") as handle:
        return list(csv.DictReader(handle))


# --- the template and the similarity transform ------------------------------------------


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = np.radians(17.0), 0.43, np.array([12.5, -7.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T + shift
    matrix = similarity_transform(points, moved)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    assert landmark_error(matrix, points, moved / 50, 50) == pytest.approx(0.0, abs=1e-9)
    # With noise it still agrees with OpenCV's least-squares fit to a close tolerance.
    noisy = moved + rng.normal(0, 0.5, moved.shape)
    opencv, _ = cv2.estimateAffinePartial2D(points, noisy, method=cv2.LMEDS)
    np.testing.assert_allclose(similarity_transform(points, noisy), opencv, atol=0.2)


def test_warp_shrinks_by_area_without_aliasing():
    """A fine stripe pattern shrunk 8x averages to flat gray instead of aliasing into stripes."""
    stripes = np.zeros((512, 512, 3), np.uint8)
    stripes[:, ::2] = 255
    crop = warp_face(stripes, np.array([[1 / 8, 0, 0], [0, 1 / 8, 0]]), 64)
    assert crop.shape == (64, 64, 3)
    assert np.abs(crop.astype(float) - 127.5).max() < 3


def test_shipped_template_is_a_face():
    template = load_template()
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = template
    assert lx < nx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry) < 1
    assert np.all((template > 0) & (template < 1))


@pytest.mark.parametrize("text", ["{not json", '{"landmarks": [[0.3, 0.4], [0.7, 0.4]]}', '{"points": []}', "[1, 2]",
                                  '{"landmarks": [["a", 1], [1, 1], [1, 1], [1, 1], [1, 1]]}'])
def test_bad_template_file_is_named(tmp_path, text):
    bad = tmp_path / "broken_template.json"
    bad.write_text(text)
    with pytest.raises(TemplateError, match="broken_template.json"):
        load_template(bad)
    with pytest.raises(TemplateError, match="missing.json"):
        load_template(tmp_path / "missing.json")


def test_fer_framing_of_the_demo_video(tmp_path, short_video):
    """Landmarks of the FER-framed crops sit on the template: as fitted, and as MTCNN finds them
    again in the crops."""
    from fertransfer.extract.detect import FaceDetector

    ctx = make_context(tmp_path, inputs=[str(short_video)], min_face_size=40, framing="fer", **NO_FILTERS)
    summary = run(ctx)
    rows = read_rows(ctx.out_dir)
    assert summary["framing"] == "fer" and len(rows) == 24
    errors = [float(r["landmark_error"]) for r in rows]
    assert np.median(errors) < 0.03
    crops = np.stack([cv2.cvtColor(cv2.imread(str(ctx.out_dir / "faces" / r["file"])), cv2.COLOR_BGR2RGB) for r in rows[::3]])
    found = [d for d in FaceDetector(min_face_size=40).detect(crops) if len(d)]
    assert len(found) >= 0.75 * len(crops)
    redetected = [np.sqrt(((d.landmarks[0] / 128 - load_template()) ** 2).sum(axis=1).mean()) for d in found]
    assert np.median(redetected) < 0.05
    # Not levelled exactly (the fit weighs all five points), but close: the template's eyes are ~1 degree off level.
    assert np.median([abs(eye_angle(d.landmarks[0])) for d in found]) < 3.0


# --- labelled inputs and the split in time ----------------------------------------------


def test_check_options_holdout_and_gap(tmp_path):
    for bad in (dict(holdout=1.0), dict(holdout=-0.1), dict(holdout_gap=-1), dict(framing="tight")):
        with pytest.raises(StageError, match=next(iter(bad))):
            check_options(make_context(tmp_path, inputs=["x.mp4"], **bad).options)


def test_labelled_folder_split_in_time(tmp_path, short_video, caplog):
    """root/<class>/*.mp4: labels in faces.csv, the later frames of each labelled clip in
    person_test/<class>/ with the gap dropped; an unknown class (contempt) is unlabelled footage
    with a warning; a clip without a face is reported and the rest processed."""
    from fertransfer.data import load_dataset
    from fertransfer.demo.video import DemoVideoSpec, make_demo_video

    root = tmp_path / "person"
    for name in ("happy", "sad", "contempt", "fear"):
        (root / name).mkdir(parents=True)
    # sad is a copy of happy: every sad footage crop is a duplicate, but test crops skip that filter.
    shutil.copy(short_video, root / "happy" / "clip_happy.mp4")
    shutil.copy(short_video, root / "sad" / "clip_sad.mp4")
    shutil.copy(short_video, root / "contempt" / "clip_contempt.mp4")
    make_demo_video(root / "fear" / "clip_fear.mp4", DemoVideoSpec(frames=12, no_face=(0.0, 2.0)))
    filters = {**NO_FILTERS, "dedupe_hash_distance": 2}
    ctx = make_context(tmp_path, inputs=[str(root)], min_face_size=40, holdout=0.5, holdout_gap=2, **filters)
    with caplog.at_level(logging.WARNING):
        summary = run(ctx)
    out = ctx.out_dir
    rows = read_rows(out)
    by_clip = {name: [r for r in rows if Path(r["video"]).stem == f"clip_{name}"] for name in ("happy", "sad", "contempt")}

    # 24 frames, holdout 0.5: boundary at frame 12, gap 2 -> footage 0-9, dropped 10-13, test 14-23.
    happy = by_clip["happy"]
    assert {r["label"] for r in happy} == {"happy"}
    assert {int(r["frame"]) for r in happy if r["split"] == "test"} == set(range(14, 24))
    assert {int(r["frame"]) for r in happy if r["split"] == "footage"} <= set(range(0, 10))
    assert sorted(p.name for p in (out / "person_test" / "happy").iterdir()) == [
        f"clip_happy_{i:06d}.jpg" for i in range(14, 24)]
    assert all((out / "faces" / r["file"]).is_file() for r in rows if r["split"] == "footage")
    counts = summary["inputs"][str(root / "happy" / "clip_happy.mp4")]
    assert counts["gap_dropped"] == 4 and counts["test"] == 10

    sad = by_clip["sad"]
    assert [r for r in sad if r["split"] == "footage"] == [], "sad footage duplicates happy's"
    assert len([r for r in sad if r["split"] == "test"]) == 10

    contempt = by_clip["contempt"]
    assert len(contempt) > 0 and {(r["label"], r["split"]) for r in contempt} == {("", "footage")}
    assert {int(r["frame"]) for r in contempt} & set(range(14, 24)), "an unknown class is all footage"
    assert not (out / "person_test" / "contempt").exists()
    assert any("contempt" in m and "unlabelled" in m for m in caplog.messages)

    fear = str(root / "fear" / "clip_fear.mp4")
    assert summary["no_face"] == [fear] and any("clip_fear.mp4" in m and "no face" in m for m in caplog.messages)
    labels = summary["labels"]
    assert labels["test_per_class"]["happy"] == labels["test_per_class"]["sad"] == 10
    assert labels["test_per_class"]["fear"] == 0 and labels["footage_per_class"]["sad"] == 0
    assert labels["unknown_class_folders"] == [str(root / "contempt")]
    assert labels["unlabelled_inputs"] == [str(root / "contempt" / "clip_contempt.mp4")]
    totals = summary["totals"]
    assert totals["test"] == 20 and totals["gap_dropped"] == 8 and totals["footage"] == len(list((out / "faces").iterdir()))
    assert summary["person_test_dir"] == "person_test"

    dataset = load_dataset(out / "person_test", channels=3)
    assert sum(len(s) for s in dataset.splits.values()) == 20
