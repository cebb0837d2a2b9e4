"""The augment stage with the real cyclegan Translator (a tiny untrained checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fertransfer.cyclegan.testing import tiny_checkpoint
from fertransfer.data import load_dataset
from fertransfer.data.images import read_image, write_jpeg
from fertransfer.pipelines import StageError, load_config, run_pipeline
from fertransfer.pipelines.cli import main


def write_config(folder: Path, smileys: Path, **augment) -> Path:
    values = {"checkpoint": "gen.pt", "gallery_examples": 2, "batch_size": 32, **augment}
    config = folder / "pipeline.toml"
    data = f"fer = {json.dumps(str(smileys))}\n" + (f"faces = {json.dumps(values.pop('faces'))}\n" if "faces" in values else "")
    config.write_text('[run]\ndir = "run"\n[data]\n' + data + '[augment]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return config


def test_stage_with_a_tiny_translator(smileys, tmp_path):
    tiny_checkpoint(tmp_path / "gen.pt", image_size=32, a_channels=3, b_channels=1)
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        write_jpeg(faces / f"face_{i}.jpg", np.full((40, 40, 3), 60 * i, np.uint8))
    config = load_config(write_config(tmp_path, smileys, faces="faces", sets=["synthetic", "balanced"]))
    (status,) = run_pipeline(config, "augment")
    summary = status.manifest["summary"]
    stage_dir = tmp_path / "run" / "augment"
    assert summary["generator"] == {"image_size": 32, "in_channels": 1, "out_channels": 3}
    data = load_dataset(smileys)
    train = data["train"]
    assert summary["translated_total"] == len(train) + len(data["test"])  # [augment] splits: train and test
    some = next((stage_dir / "translated/train/happy").iterdir())
    assert read_image(some, channels=3).shape == (32, 32, 3)
    balanced = load_dataset(stage_dir / "sets/balanced", channels=3, val_fraction=0, test_fraction=0)
    largest = int(np.bincount(train.labels).max())
    assert set(balanced.counts()["train"].values()) == {largest}
    assert summary["gallery"]["cycled_back"] and summary["gallery"]["person_faces"] == 2
    assert main(["gallery", str(tmp_path / "run"), "--out", str(tmp_path / "g"), "--examples", "1"]) == 0
    assert (tmp_path / "g" / "gallery.html").read_text().count("data:image/png;base64,") == 7 * 3 + 1


def test_stage_refuses_a_checkpoint_that_does_not_fit(smileys, tmp_path):
    tiny_checkpoint(tmp_path / "gen.pt", image_size=32, a_channels=3, b_channels=3)  # B as RGB, data gray
    with pytest.raises(StageError, match=r"gen.pt \(BtoA\) takes 3-channel 32x32 input, but .* holds gray 48x48"):
        run_pipeline(load_config(write_config(tmp_path, smileys)), "augment")
    (tmp_path / "gen.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StageError, match=r"gen.pt: cannot load the BtoA generator"):
        run_pipeline(load_config(write_config(tmp_path, smileys)), "augment")
    assert not (tmp_path / "run" / "augment").exists()


def test_after_the_cyclegan_stage_it_takes_its_generator_and_faces(smileys, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(10):
        write_jpeg(faces / f"f{i}.jpg", np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    cyclegan = dict(image_size=16, ngf=4, ndf=4, n_layers=2, steps=2,
                    checkpoint_every=2, sample_every=2, swd_images=2, threads=1)
    text = f'[run]\ndir = "run"\ndevice = "cpu"\n[data]\nfer = {json.dumps(str(smileys))}\nfaces = "faces"\n[cyclegan]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cyclegan.items())
    text += '[augment]\nsets = ["synthetic"]\ngallery_examples = 1\n'
    (tmp_path / "pipeline.toml").write_text(text)
    config = load_config(tmp_path / "pipeline.toml")
    run_pipeline(config, "cyclegan")
    (status,) = run_pipeline(config, "augment")
    summary = status.manifest["summary"]
    assert summary["checkpoint"] == str((tmp_path / "run/cyclegan/checkpoints/latest.pt").resolve())
    assert summary["generator"]["image_size"] == 16
    assert summary["faces"] == str(faces.resolve()) and summary["gallery"]["person_faces"] == 1
    assert list(status.manifest["fingerprint"]["upstream"]) == ["cyclegan"]


def test_bf16_on_cpu_stays_close_to_fp32(tmp_path):
    from fertransfer.augment.stage import load_generator

    path = tiny_checkpoint(tmp_path / "gen.pt", image_size=32, ngf=8)
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 1), dtype=np.uint8)
    fp32 = load_generator(path, "BtoA", "cpu", "fp32")
    bf16 = load_generator(path, "BtoA", "cpu", "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a, b = fp32.fn(images).astype(int), bf16.fn(images).astype(int)
    assert a.shape == b.shape == (8, 32, 32, 3)
    assert not np.array_equal(a, b)  # bf16 really ran
    assert np.abs(a - b).mean() < 3  # within a few gray levels
