"""The data layer: every layout, class aliases, splits, bad input and image modes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fertransfer.data import (
    FER,
    DatasetError,
    class_set,
    load_dataset,
    load_image_folder,
    read_image,
    write_jpeg,
)


def write_gray(path: Path, value: int, size: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


def write_csv(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return path


def pixels(value: int, count: int = 48 * 48) -> str:
    return " ".join([str(value)] * count)


# --- layouts ------------------------------------------------------------------------------


def test_kaggle_folders_split_test_by_prefix(smileys):
    data = load_dataset(smileys)
    assert data.layout == "split-folders"
    assert data.class_names == FER.names
    assert set(data.splits) == {"train", "val", "test"}
    assert all(Path(f).name.startswith("PublicTest_") for f in data["val"].files)
    assert all(Path(f).name.startswith("PrivateTest_") for f in data["test"].files)
    assert all(Path(f).name.startswith("Training_") for f in data["train"].files)
    train = data["train"]
    assert train.images.shape[1:] == (48, 48, 1) and train.images.dtype == np.uint8
    assert len(train.labels) == len(train.files) == len(train.images)
    # Every image's label is the class folder it came from.
    for label, file in zip(train.labels, train.files):
        assert Path(file).parent.name == FER.names[label]
    assert data.counts()["train"]["disgust"] < data.counts()["train"]["happy"]


def test_csv_usage_maps_to_splits(tmp_path):
    rows = [(i % 7, pixels(9 * i), usage) for i, usage in
            enumerate(["Training"] * 14 + ["PublicTest"] * 7 + ["PrivateTest"] * 7)]
    data = load_dataset(write_csv(tmp_path / "fer.csv", rows))
    assert data.layout == "csv"
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 14, "val": 7, "test": 7}
    assert data["train"].images[3].max() == 27 and data["train"].labels[3] == 3
    assert data["val"].files[0] == "fer.csv:16"


def test_csv_rgb_and_resize(tmp_path):
    path = write_csv(tmp_path / "fer.csv", [(i % 7, pixels(100), "Training") for i in range(20)])
    data = load_dataset(path, channels=3, size=64, val_fraction=0.2, test_fraction=0)
    assert data["train"].images.shape[1:] == (64, 64, 3)
    assert set(data.splits) == {"train", "val"}


@pytest.mark.parametrize(
    "row, message",
    [
        ((3, pixels(1, 2303), "Training"), "2303 pixel values, expected 2304"),
        ((7, pixels(1), "Training"), "emotion 7 is outside 0..6"),
        (("x", pixels(1), "Training"), "emotion 'x' is not an integer"),
        ((3, pixels(1), "Holdout"), "Usage 'Holdout'"),
    ],
)
def test_csv_bad_row_names_the_row(tmp_path, row, message):
    rows = [(0, pixels(5), "Training"), row]
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(write_csv(tmp_path / "bad.csv", rows))
    assert "bad.csv:3" in str(error.value)


def test_flat_folders_get_a_seeded_stratified_split(tmp_path):
    for name in FER.names:
        for i in range(20):
            write_gray(tmp_path / name / f"{i}.png", 10 + i)
    first = load_dataset(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=3)
    again = load_dataset(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=3)
    other = load_dataset(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=4)
    assert first.layout == "class-folders"
    assert {k: len(v) for k, v in first.splits.items()} == {"train": 7 * 14, "val": 7 * 4, "test": 7 * 2}
    for split in ("train", "val", "test"):
        assert set(first.counts()[split].values()) == {len(first[split]) // 7}  # stratified
    assert first["val"].files == again["val"].files
    assert first["val"].files != other["val"].files
    assert not set(first["val"].files) & set(first["train"].files)


def test_class_aliases_and_case(tmp_path):
    for folder in ("Anger", "happiness", "SADNESS", "surprised"):
        for i in range(3):
            write_gray(tmp_path / "train" / folder / f"{i}.png", 50)
    data = load_dataset(tmp_path, val_fraction=0, test_fraction=0)
    counts = data.counts()["train"]
    assert counts == {"angry": 3, "disgust": 0, "fear": 0, "happy": 3, "sad": 3, "surprise": 3, "neutral": 0}


def test_custom_class_set(tmp_path):
    for folder in ("negative", "positive"):
        write_gray(tmp_path / folder / "a.png", 1)
        write_gray(tmp_path / folder / "b.png", 2)
    data = load_dataset(tmp_path, classes=class_set(["positive", "negative"]), val_fraction=0, test_fraction=0)
    assert data.class_names == ("positive", "negative")
    assert sorted(data["train"].labels.tolist()) == [0, 0, 1, 1]


def test_unknown_class_folder_lists_known_classes(tmp_path):
    write_gray(tmp_path / "train" / "happy" / "a.png", 1)
    write_gray(tmp_path / "train" / "bored" / "a.png", 1)
    with pytest.raises(DatasetError, match="unknown class folder 'bored'; known classes: angry, disgust"):
        load_dataset(tmp_path)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(tmp_path / "missing")


def test_unreadable_images_are_skipped_with_one_warning(tmp_path, caplog):
    for i in range(4):
        write_gray(tmp_path / "happy" / f"{i}.jpg", 100)
    good = (tmp_path / "happy" / "0.jpg").read_bytes()
    (tmp_path / "happy" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "happy" / "garbage.png").write_bytes(b"not an image at all")
    (tmp_path / "happy" / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        data = load_dataset(tmp_path, val_fraction=0, test_fraction=0)
    assert len(data["train"]) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 unreadable" in warnings[0]
    assert "truncated.jpg" in warnings[0] and "garbage.png" in warnings[0]


# --- image modes --------------------------------------------------------------------------


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[:4, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png", channels=3)
    assert image[0, 0].tolist() == [200, 0, 0]
    assert image[7, 0].tolist() == [255, 255, 255]


def test_palette_image(tmp_path):
    palette_image = Image.new("P", (6, 6))
    palette_image.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    palette_image.paste(1, (0, 0, 6, 6))
    palette_image.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png", channels=3)[2, 2].tolist() == [10, 200, 30]


def test_sixteen_bit_gray_is_scaled(tmp_path):
    array = np.full((6, 6), 65535, np.uint16)
    array[0, 0] = 32768
    Image.fromarray(array).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png", channels=1)
    assert image.dtype == np.uint8
    assert image[1, 1, 0] == 255 and image[0, 0, 0] == 128


def test_cmyk_jpeg_matches_pillow_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (220, 40, 40)
    rgb[:, 8:] = (40, 40, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")).astype(int)
    image = read_image(tmp_path / "c.jpg", channels=3).astype(int)
    assert np.abs(image - expected).max() <= 3
    assert image[4, 2, 0] > 180 and image[4, 12, 2] > 180


def test_gray_and_rgb_conversions(tmp_path):
    write_jpeg(tmp_path / "rgb.jpg", np.full((10, 10, 3), (0, 255, 0), np.uint8), quality=100)
    gray = read_image(tmp_path / "rgb.jpg", channels=1)
    assert gray.shape == (10, 10, 1) and abs(int(gray[5, 5, 0]) - 150) <= 3  # ITU-R 601 luma of green
    write_gray(tmp_path / "g.png", 77)
    rgb = read_image(tmp_path / "g.png", channels=3, size=20)
    assert rgb.shape == (20, 20, 3) and rgb[3, 3].tolist() == [77, 77, 77]


def test_image_folder_of_mixed_sizes(tmp_path):
    write_gray(tmp_path / "a.png", 10, size=32)
    write_gray(tmp_path / "sub" / "b.png", 20, size=64)
    images, files = load_image_folder(tmp_path, channels=3)
    assert images.shape == (2, 32, 32, 3)
    assert [Path(f).name for f in files] == ["a.png", "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        load_image_folder(tmp_path / "empty", channels=3)


# --- the shared FER2013 data --------------------------------------------------------------


@pytest.mark.realdata
def test_shared_fer2013_counts(shared_data):
    data = load_dataset(shared_data / "fer2013")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 28709, "val": 3589, "test": 3589}
    assert data.counts()["train"] == {
        "angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171, "neutral": 4965,
    }


@pytest.mark.realdata
def test_shared_sample_csv(shared_data):
    data = load_dataset(shared_data / "fer2013_sample.csv")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 280, "val": 70, "test": 70}


def test_csv_without_usage_column_says_it_is_split(tmp_path, caplog):
    import logging

    rows = ["emotion,pixels"] + [f"{i % 7}," + " ".join(["128"] * 2304) for i in range(70)]
    (tmp_path / "noisy.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        data = load_dataset(tmp_path / "noisy.csv")
    assert set(data.splits) == {"train", "val", "test"}
    assert "no Usage column" in caplog.text and "noisy.csv" in caplog.text
