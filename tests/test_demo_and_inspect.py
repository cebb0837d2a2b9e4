"""The built-in demo data and `pipeline inspect`."""

from __future__ import annotations

import json

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fertransfer.data import FER, load_dataset
from fertransfer.demo.video import DemoVideoSpec, face_visible
from fertransfer.pipelines.cli import main


def test_smiley_dataset_is_learnable_kaggle_layout(smileys):
    data = load_dataset(smileys)
    assert set(data.splits) == {"train", "val", "test"}
    counts = data.counts()["train"]
    assert all(counts[name] >= 8 for name in FER.names)
    assert counts["disgust"] < counts["happy"]  # imbalanced like FER2013
    # Classes differ visibly: a linear model on edge maps beats chance (1/7) by far.
    train, test = data["train"], data["test"]
    model = LogisticRegression(max_iter=2000, C=0.1).fit(edge_features(train.images), train.labels)
    assert model.score(edge_features(test.images), test.labels) > 0.4


def edge_features(images: np.ndarray) -> np.ndarray:
    """Blurred gradient magnitude: the same for dark-on-light and light-on-dark drawings."""
    features = []
    for image in images[..., 0].astype(np.float32):
        magnitude = np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1))
        magnitude = cv2.GaussianBlur(magnitude, (5, 5), 1.5)
        features.append((magnitude / (magnitude.std() + 1e-6)).ravel())
    return np.array(features)


def test_demo_video_has_frames_with_and_without_the_face(demo_video):
    reader = imageio.get_reader(demo_video)
    frames = [frame for frame in reader]
    spec = DemoVideoSpec(frames=96)
    assert len(frames) == 96 and frames[0].shape == (spec.height, spec.width, 3)
    visible = [face_visible(i, spec) for i in range(96)]
    assert 10 <= visible.count(False) <= 20
    # The slide frames differ from the frames showing the portrait.
    slide = next(i for i, v in enumerate(visible) if not v)
    assert np.abs(frames[slide].astype(int) - frames[0].astype(int)).mean() > 20


def test_inspect_prints_counts_baseline_and_writes_chart(smileys, tmp_path, capsys):
    chart, summary_file = tmp_path / "chart.png", tmp_path / "summary.json"
    assert main(["inspect", str(smileys), "--chart", str(chart), "--json", str(summary_file)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(summary_file.read_text())
    assert summary["totals"]["train"] == sum(summary["counts"]["train"].values())
    assert summary["majority_class"] == "happy"
    assert f"happy    {summary['counts']['train']['happy']:>7}" in out
    assert "majority-class baseline ('happy')" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_writes_no_file_without_chart(smileys, tmp_path, monkeypatch, capsys):
    """Files only where asked: without --chart (or --json) inspect only prints."""
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", str(smileys)]) == 0
    out = capsys.readouterr().out
    assert "majority-class baseline" in out and "chart" not in out
    assert list(tmp_path.iterdir()) == []


def test_inspect_writes_the_chart_where_asked(smileys, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    chart = tmp_path / "figures" / "classes.png"
    assert main(["inspect", str(smileys), "--chart", str(chart)]) == 0
    assert f"class distribution chart: {chart}" in capsys.readouterr().out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]


def test_predict_needs_out(tmp_path, monkeypatch, capsys):
    """predict writes predictions.csv and annotated copies only into the folder --out names."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path), "--model", str(tmp_path)])
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_inspect_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9," + " ".join(["0"] * 2304) + ",Training\n")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}:2: emotion 9 is outside 0..6"


def test_demo_no_run_writes_a_loadable_config(tmp_path):
    from fertransfer.pipelines import load_config
    from fertransfer.pipelines.demo import write_demo

    folder = tmp_path / "demo"
    config_path = write_demo(folder, DemoVideoSpec(frames=24))
    config = load_config(config_path)
    assert config.run_dir == folder / "run"
    assert (folder / "data" / "lecture.mp4").stat().st_size > 0
    assert load_dataset(folder / "data" / "smileys").layout == "split-folders"


def test_the_demo_holds_out_enough_person_crops_for_a_firm_person_score(tmp_path):
    """`make demo`'s person score trains on the crops its cyclegan holds out (at most a fifth of the
    footage): below WARN_CROPS every demo printed a warning that its score was rough (62 crops, 12 held out)."""
    from fertransfer.cyclegan.data import holdout_split
    from fertransfer.cyclegan.person_score import WARN_CROPS
    from fertransfer.pipelines import load_config
    from fertransfer.pipelines.demo import write_demo
    from fertransfer.pipelines.runner import run_pipeline

    config = load_config(write_demo(tmp_path / "demo"))
    run_pipeline(config, "extract")
    crops = len(list((config.run_dir / "extract" / "faces").glob("*.jpg")))
    _, held = holdout_split(crops, config.options("cyclegan").swd_images, seed=0)
    assert len(held) >= WARN_CROPS, f"{crops} crops, {len(held)} held out"


def test_inspect_warns_when_one_split_is_blurred(smileys, tmp_path, capsys):
    """A blurred copy of one split (as the shared FER2013 train split once was) is flagged."""
    import shutil

    copy = tmp_path / "blurred"
    shutil.copytree(smileys, copy)
    for path in (copy / "train").rglob("*.jpg"):
        cv2.imwrite(str(path), cv2.GaussianBlur(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (0, 0), 3))
    assert main(["inspect", str(copy), "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "warning: the train split is" in out and "blurrier than" in out
    assert main(["inspect", str(smileys), "--chart", str(tmp_path / "c.png")]) == 0
    assert "warning" not in capsys.readouterr().out
