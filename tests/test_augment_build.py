"""What the augment stage writes: translated folders, labels.csv, sets, gallery, and the CLI.

The generators are deterministic stand-ins (tests/augment_helpers.py); the real cyclegan
Translator is used in test_augment_translator.py.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from augment_helpers import SIZE, backward, forward, labelled, to_person
from fertransfer.augment import generators as augment_generators
from fertransfer.augment import stage as augment_stage
from fertransfer.augment.build import BuildSettings, Generator, build_outputs, load_fer
from fertransfer.augment.cli import check_output_dir
from fertransfer.augment.core import GeneratorSpec
from fertransfer.augment.io import file_stem
from fertransfer.data import FER, load_dataset
from fertransfer.data.images import conform, read_image, write_jpeg
from fertransfer.pipelines import load_config, run_pipeline
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.stage import StageError

ALL_SETS = ["real", "synthetic", "real+synthetic", "balanced", "classic", "real+classic"]


def settings(**changes) -> BuildSettings:
    values = dict(splits=["train"], sets=ALL_SETS, gallery_examples=3, batch_size=16, seed=0)
    return BuildSettings(**{**values, **changes})


def files_per_class(folder: Path) -> dict[str, int]:
    return {d.name: len(list(d.iterdir())) for d in sorted(folder.iterdir()) if d.is_dir()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build over a small imbalanced in-memory dataset with an empty class, val translated too."""
    out = tmp_path_factory.mktemp("augment")
    data = labelled([6, 0, 3, 12, 4, 2, 5], split_counts={"val": [1, 1, 1, 1, 1, 1, 1]})
    faces = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    summary = build_outputs(
        out, out.parent, data, forward(), settings(splits=["train", "val"], synthetic_ratio=0.5),
        checkpoint="/ckpt/latest.pt", backward=backward(), faces=faces,
    )
    return out, data, summary


def test_translated_folders_and_labels_csv(built):
    out, data, summary = built
    train = data["train"]
    assert summary["translated"]["train"] == dict(zip(data.class_names, [6, 0, 3, 12, 4, 2, 5]))
    assert summary["translated_total"] == 32 + 7
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "label", "source_file", "split", "checkpoint"]
    assert len(rows) == 39 and {r["split"] for r in rows} == {"train", "val"}
    first = rows[0]
    assert first == {
        "file": "translated/train/angry/000000_train_0.png",
        "label": "angry",
        "source_file": train.files[0],
        "split": "train",
        "checkpoint": "/ckpt/latest.pt",
    }
    # Each written file is the translation of its source, at the generator's size, in RGB.
    for row in rows[::7]:
        index = train.files.index(row["source_file"]) if row["split"] == "train" else None
        image = read_image(out / row["file"], channels=3)
        assert image.shape == (SIZE, SIZE, 3)
        if index is not None:
            assert np.array_equal(image, to_person(conform(train.images[index : index + 1], SIZE, 1))[0])
    assert files_per_class(out / "translated" / "val") == dict.fromkeys(sorted(data.class_names), 1)


def test_sets_are_readable_with_the_summary_counts(built):
    out, data, summary = built
    expected = {
        "real": [6, 0, 3, 12, 4, 2, 5],
        "synthetic": [6, 0, 3, 12, 4, 2, 5],
        "real+synthetic": [9, 0, 5, 18, 6, 3, 8],  # ratio 0.5, rounded half up
        "balanced": [12, 0, 12, 12, 12, 12, 12],
        "classic": [12, 0, 12, 12, 12, 12, 12],
        "real+classic": [9, 0, 5, 18, 6, 3, 8],  # real+synthetic's control: the same sources
    }
    assert list(summary["sets"]) == ALL_SETS
    for name, counts in expected.items():
        entry = summary["sets"][name]
        assert entry["counts"] == dict(zip(data.class_names, counts)), name
        folder = out / entry["folder"]
        assert folder.name == name.replace("+", "_")
        # Every class folder exists (empty ones too); the data layer reads the set back.
        assert sorted(p.name for p in folder.iterdir()) == sorted(data.class_names)
        loaded = load_dataset(folder, val_fraction=0, test_fraction=0)
        assert loaded.counts()["train"] == dict(zip(data.class_names, counts)), name
    assert summary["skipped_classes"] == ["disgust"]
    assert "class 'disgust' has no images; skipped (it stays empty)" in summary["sets"]["balanced"]["notes"]
    assert summary["sets"]["balanced"]["target_per_class"] == 12
    assert "class 'disgust' has no images in split 'train'" in summary["warnings"]
    # The real set keeps the original images; translations and classic copies are at the generator's
    # size in RGB; the mixed sets' real images keep their size (no blurring round trip), in RGB.
    real_file = next((out / "sets/real/happy").iterdir())
    assert read_image(real_file, channels=3).shape == (24, 24, 3)
    assert read_image(real_file, channels=1).shape == (24, 24, 1)
    for name in ("synthetic", "real_synthetic", "balanced", "classic", "real_classic"):
        for some in (out / "sets" / name / "happy").iterdir():
            size = 24 if some.name.startswith("real_") else SIZE
            assert read_image(some, channels=3).shape == (size, size, 3), some.name
    train = data["train"]
    for some in (out / "sets/real_synthetic/happy").glob("real_*"):
        index = int(some.name.split("_")[1])
        assert np.array_equal(read_image(some, channels=1), train.images[index]), some.name  # the pixels of `real`


def test_sets_share_files_instead_of_copies(built):
    out, _, _ = built
    synthetic = next((out / "sets/synthetic/angry").iterdir())
    assert synthetic.stat().st_nlink >= 2  # linked to translated/ (and the other sets using it)
    names = {p.name for p in (out / "sets/balanced/fear").iterdir()}  # 3 real, 3 translated, 6 new
    assert any(n.startswith("real_") for n in names) and any(n.startswith("translated_") for n in names)
    assert any(n.startswith("gan_extra_") for n in names)
    assert all(n.startswith(("real_", "classic_extra_")) for n in (p.name for p in (out / "sets/classic/angry").iterdir()))


def test_gallery_page_is_offline_and_complete(built):
    out, data, summary = built
    assert summary["gallery"] == {
        "html": "gallery.html", "png": "gallery.png", "examples_per_class": 3, "cycled_back": True,
        "person_faces": 3, "split": "train",
    }
    page = (out / "gallery.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    # 3 rows of 3 examples for 5 classes, of 2 for surprise, none for disgust; then 3 faces.
    assert len(sources) == (5 * 3 + 2) * 3 + 3
    for name in data.class_names:
        assert f"<h2>{name}</h2>" in page
    assert "No images of this class." in page and "cycled back" in page
    assert "Training sets (images per class)" in page
    mosaic = read_image(out / "gallery.png", channels=3)
    assert mosaic.shape[0] > 6 * 3 * SIZE and mosaic.shape[1] > 3 * SIZE
    assert json.loads((out / "gallery.json").read_text())["run_dir"] == str(out.parent.resolve())


def test_bad_settings_and_missing_splits_are_refused(tmp_path):
    data = labelled([2] * 7)
    with pytest.raises(StageError, match="unknown set"):
        build_outputs(tmp_path, tmp_path, data, forward(), settings(sets=["real", "fancy"]), "c")
    with pytest.raises(StageError, match="built from 'train'"):
        build_outputs(tmp_path, tmp_path, data, forward(), settings(splits=["val"]), "c")
    with pytest.raises(StageError, match=r"no split val \(it has train\)"):
        build_outputs(tmp_path, tmp_path, data, forward(), settings(splits=["train", "val"]), "c")
    with pytest.raises(StageError, match="synthetic_ratio"):
        build_outputs(tmp_path, tmp_path, data, forward(), settings(synthetic_ratio=1.5), "c")
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_smileys_end_to_end_with_jpg(smileys, tmp_path):
    data = load_fer(smileys, seed=0)
    assert data["train"].images.shape[1:] == (48, 48, 1)  # gray files stay gray
    summary = build_outputs(
        tmp_path, tmp_path, data, forward(), settings(image_format="jpg", sets=["real", "balanced"]), checkpoint="c"
    )
    train_counts = data.counts()["train"]
    largest = max(train_counts.values())
    assert summary["sets"]["real"]["counts"] == train_counts
    assert summary["sets"]["balanced"]["counts"] == dict.fromkeys(data.class_names, largest)
    assert all(p.suffix == ".jpg" for p in (tmp_path / "sets/balanced/disgust").iterdir())
    assert summary["image_shapes"]["real set (original FER)"] == "48x48x1"


def test_a_gray_generators_mixed_sets_link_the_real_sets_files(tmp_path):
    data = labelled([4, 2, 3, 5, 2, 2, 3])
    darker = Generator(lambda images: images // 2, GeneratorSpec(SIZE, 1, 1, "stand-in, gray"))
    build_outputs(tmp_path, tmp_path, data, darker, settings(sets=["real", "real+synthetic"], gallery_examples=0), "c")
    mixed = sorted((tmp_path / "sets/real_synthetic/angry").glob("real_*"))
    assert mixed
    for some in mixed:
        original = tmp_path / "sets/real/angry" / some.name
        assert some.stat().st_nlink >= 2 and np.array_equal(read_image(some, 1), read_image(original, 1))
        assert read_image(some, 1).shape == (24, 24, 1)


def test_file_stems():
    assert file_stem("/data/train/happy/Training_123.jpg") == "Training_123"
    assert file_stem("fer2013.csv:17") == "fer2013_csv_17"


def test_output_dir_guard(tmp_path):
    run = tmp_path / "run"
    (run / "augment").mkdir(parents=True)
    (run / "augment" / "manifest.json").write_text("{}")
    check_output_dir(tmp_path / "new", run, force=False)
    check_output_dir(run / "augment", run, force=False)  # the run's own stage folder
    other = tmp_path / "other" / "augment"
    other.mkdir(parents=True)
    (other / "manifest.json").write_text("{}")
    with pytest.raises(StageError, match=r"holds another run's data \(a stage's output"):
        check_output_dir(other, run, force=False)
    check_output_dir(other, run, force=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "gallery.json").write_text(json.dumps({"run_dir": str(run)}))
    check_output_dir(tmp_path / "mine", run, force=False)  # an earlier gallery of the same run


# --- the stage through the runner, and `pipeline gallery` --------------------------------


@pytest.fixture
def stand_in_generators(monkeypatch):
    """The stage's checkpoint loading replaced by the stand-ins (the file must still exist)."""

    def load(path, direction, device, precision="fp32"):
        if not Path(path).is_file():
            raise StageError(f"{path}: generator checkpoint not found")
        return forward() if direction == "BtoA" else backward()

    monkeypatch.setattr(augment_stage, "load_generator", load)
    monkeypatch.setattr(augment_generators, "load_generator", load)  # `pipeline gallery` loads through it


def write_config(folder: Path, smileys: Path, **augment) -> Path:
    values = {"checkpoint": "gen.pt", "gallery_examples": 2, **augment}
    config = folder / "pipeline.toml"
    data = f"fer = {json.dumps(str(smileys))}\n" + (f"faces = {json.dumps(values.pop('faces'))}\n" if "faces" in values else "")
    config.write_text('[run]\ndir = "run"\n[data]\n' + data + '[augment]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return config


def test_stage_runs_through_the_runner_and_gallery_rebuilds(smileys, tmp_path, stand_in_generators, capsys):
    (tmp_path / "gen.pt").write_bytes(b"stand-in")
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        write_jpeg(faces / f"face_{i}.jpg", np.full((50, 50, 3), 40 * i, np.uint8))
    config = load_config(write_config(tmp_path, smileys, faces="faces", sets=["real", "synthetic"]))
    assert config.options("augment").sets == ["real", "synthetic"]
    (status,) = run_pipeline(config, "augment")
    stage_dir = tmp_path / "run" / "augment"
    summary = status.manifest["summary"]
    assert summary["faces"] == str(faces.resolve()) and summary["gallery"]["person_faces"] == 2
    assert summary["checkpoint"] == str((tmp_path / "gen.pt").resolve())
    assert summary["translation_judge"] is None and "measured by classify" in summary["translation_judge_note"]
    assert "translate_s" in status.manifest["timings"]
    assert (stage_dir / "gallery.html").is_file() and (stage_dir / "sets/synthetic").is_dir()

    # Rebuild into the run's own folder (allowed), then elsewhere.
    (stage_dir / "gallery.html").unlink()
    assert main(["gallery", str(tmp_path / "run"), "--examples", "2"]) == 0
    page = (stage_dir / "gallery.html").read_text()
    assert page.count("data:image/png;base64,") == 7 * 2 * 3 + 2
    assert main(["gallery", str(tmp_path / "run"), "--out", str(tmp_path / "g"), "--no-cycle"]) == 0
    assert "cycled back" not in (tmp_path / "g" / "gallery.html").read_text()

    # What classify's judge measured later shows on the rebuilt page.
    (tmp_path / "run" / "classify").mkdir()
    rates = lambda overall, happy: {"overall": overall, "images": 10,  # noqa: E731
                                    "per_class": {**dict.fromkeys(FER.names, None), "happy": happy}}
    measured = {"judge": "real model", "splits": {"test": {"images": 10, "label_preservation": rates(0.5, 0.6),
                                                            "judge_agreement": rates(0.8, 0.75),
                                                            "source_accuracy": rates(0.55, 0.7)}}}
    (tmp_path / "run" / "classify" / "manifest.json").write_text(json.dumps({"summary": {"translation_judge": measured}}))
    assert main(["gallery", str(tmp_path / "run"), "--out", str(tmp_path / "g"), "--no-cycle"]) == 0
    page = (tmp_path / "g" / "gallery.html").read_text()
    assert "<h2>happy &mdash; judge agreement 75%</h2>" in page
    assert "<tr><td><b>all</b></td><td>50.0%</td><td>80.0%</td><td>55.0%</td></tr>" in page

    # Another run's folder is refused without --force.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "manifest.json").write_text("{}")
    assert main(["gallery", str(tmp_path / "run"), "--out", str(busy)]) == 1
    assert "holds another run's data" in capsys.readouterr().err
    assert main(["gallery", str(tmp_path / "run"), "--out", str(busy), "--force"]) == 0


def test_stage_reports_a_missing_checkpoint_and_unfit_generator(smileys, tmp_path, stand_in_generators, monkeypatch):
    config = load_config(write_config(tmp_path, smileys, checkpoint=""))
    assert augment_stage.STAGE.upstream(config.options("augment")) == ["cyclegan"]
    (tmp_path / "gen.pt").write_bytes(b"x")
    config = load_config(write_config(tmp_path, smileys))

    def unfit(path, direction, device, precision="fp32"):
        generator = forward()
        return type(generator)(generator.fn, type(generator.spec)(SIZE, 3, 3, f"{path} ({direction})"))

    monkeypatch.setattr(augment_stage, "load_generator", unfit)
    with pytest.raises(StageError, match=r"gen.pt \(BtoA\) takes 3-channel 32x32 input, but .*smileys holds gray 48x48"):
        run_pipeline(config, "augment")
    assert not (tmp_path / "run" / "augment").exists()


def test_person_faces_are_data_faces_else_extract_faces_when_extract_is_done(tmp_path, smileys):
    from fertransfer.pipelines.runner import resolve_artifacts

    config = load_config(write_config(tmp_path, smileys, checkpoint=""))
    assert resolve_artifacts(config, augment_stage.STAGE) == {
        "cyclegan.generator": None, "extract.faces": None}  # nothing has run: the runner stops before run()
    config = load_config(write_config(tmp_path, smileys, faces="mine"))
    assert resolve_artifacts(config, augment_stage.STAGE) == {
        "cyclegan.generator": tmp_path / "gen.pt", "extract.faces": tmp_path / "mine"}
    config = load_config(write_config(tmp_path, smileys, gallery_examples=0))
    assert list(resolve_artifacts(config, augment_stage.STAGE)) == ["cyclegan.generator"]  # no gallery: no faces
