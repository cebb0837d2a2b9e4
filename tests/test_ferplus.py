"""FER+ labels (issue #14): row matching, the majority rule, drop counts, bad input, the classify
stage and `pipeline inspect` with labels = "ferplus", and the model card, on tiny generated data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fertransfer.data import FER, FERPLUS, FERPLUS_CLASSES, DatasetError, load_dataset, write_png
from fertransfer.data import ferplus as fp
from fertransfer.pipelines.cli import main

COLUMN = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
          "surprise": "surprise", "neutral": "neutral", "contempt": "contempt"}
HEADER = ["Usage", "Image name", *fp.VOTE_COLUMNS]
# Rows whose top vote gives no label: (votes, why), all Training rows at the start.
SPECIAL = [({"unknown": 6, "happiness": 4}, fp.TOP_UNKNOWN),
           ({"NF": 7, "neutral": 3}, fp.TOP_NOT_FACE),
           ({"happiness": 4, "sadness": 4, "neutral": 2}, fp.TIED),
           ({"anger": 5, "unknown": 5}, fp.TIED),
           ({"NF": 10}, fp.DROPPED_BY_FERPLUS)]
PER_USAGE = {"Training": 5, "PublicTest": 2, "PrivateTest": 2}


def vote_row(usage: str, row: int, votes: dict[str, int], named: bool = True) -> list:
    return [usage, f"fer{row:07d}.png" if named else "", *(votes.get(c, 0) for c in fp.VOTE_COLUMNS)]


def make_ferplus(tmp: Path, per_usage: dict[str, int] = PER_USAGE) -> tuple[Path, Path, dict[str, str | None]]:
    """A Kaggle-style split folder (Training_00000.png ...) and its fer2013new.csv.

    Every image sits in the FER folder 'neutral' (FER's label, which FER+ replaces); returns
    (root, votes file, expected FER+ class per file name or None where dropped).
    """
    root, rows, expected = tmp / "fer", [], {}
    rng = np.random.default_rng(0)

    def add(usage: str, votes: dict[str, int], named: bool, label: str | None) -> None:
        row = len(rows)
        rows.append(vote_row(usage, row, votes, named))
        name = f"{usage}_{row:05d}.png"
        folder = root / ("train" if usage == "Training" else "test") / "neutral"
        folder.mkdir(parents=True, exist_ok=True)
        write_png(folder / name, rng.integers(0, 256, (48, 48), dtype=np.uint8))
        expected[name] = label

    for votes, why in SPECIAL:
        add("Training", votes, why != fp.DROPPED_BY_FERPLUS, None)
    for usage, count in per_usage.items():
        for name in FERPLUS_CLASSES:
            other = "happiness" if name == "neutral" else "neutral"
            for _ in range(count):
                add(usage, {COLUMN[name]: 7, other: 2, "unknown": 1}, True, name)
    votes_file = tmp / "fer2013new.csv"
    write_votes(votes_file, rows)
    return root, votes_file, expected


def write_votes(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def read_rows(path: Path) -> list[list]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_ferplus(tmp_path_factory.mktemp("ferplus"))


def test_rows_matched_by_file_name_and_majority_rule(tiny):
    root, votes, expected = tiny
    data = load_dataset(root, labels="ferplus", ferplus=votes, val_fraction=0, test_fraction=0)
    assert data.classes == FERPLUS and len(data.class_names) == 8 and data.class_names[-1] == "contempt"
    assert data.labels == f"ferplus ({votes})"
    seen = {}
    for split in data.splits.values():
        for file, label in zip(split.files, split.labels):
            seen[Path(file).name] = FERPLUS.names[label]
    assert seen == {name: label for name, label in expected.items() if label is not None}
    assert data.counts()["train"]["contempt"] == PER_USAGE["Training"]  # kept, the eighth class
    assert data.dropped == {fp.TOP_UNKNOWN: 1, fp.TOP_NOT_FACE: 1, fp.TIED: 2, fp.DROPPED_BY_FERPLUS: 1}
    soft = data["train"].soft
    assert soft.shape == (len(data["train"]), 8) and np.allclose(soft.sum(axis=1), 1.0)
    first = data["train"].subset(np.array([0]))  # soft targets follow subsets
    assert np.isclose(first.soft[0].max(), 7 / 9)


def test_majority_labels_on_votes():
    rows = [{"anger": 3, "happiness": 2}, {"contempt": 4, "neutral": 3, "NF": 3}, {"unknown": 9, "fear": 1},
            {"NF": 6, "fear": 4}, {"sadness": 3, "surprise": 3}, {"neutral": 10}]
    votes = fp.FerPlusVotes(Path("x.csv"), ["Training"] * 6, np.array([True] * 5 + [False]),
                            np.array([[r.get(c, 0) for c in fp.VOTE_COLUMNS] for r in rows]))
    labels, reasons, _ = fp.majority_labels(votes)
    assert labels.tolist() == [FERPLUS.index("angry"), FERPLUS.index("contempt"), -1, -1, -1, -1]
    assert reasons == [None, None, fp.TOP_UNKNOWN, fp.TOP_NOT_FACE, fp.TIED, fp.DROPPED_BY_FERPLUS]
    # A class set without contempt: its majority images are dropped, and counted as such.
    labels, reasons, soft = fp.majority_labels(votes, classes=FER)
    assert labels[1] == -1 and reasons[1] == fp.NOT_IN_CLASSES and soft.shape == (6, 7)


def test_ferplus_needs_the_votes_file(tiny):
    with pytest.raises(DatasetError, match="fer2013new.csv"):
        load_dataset(tiny[0], labels="ferplus")
    with pytest.raises(DatasetError, match="labels 'fer\\+'"):
        load_dataset(tiny[0], labels="fer+", ferplus=tiny[1])


def test_votes_file_too_short_names_both_counts(tiny, tmp_path):
    root, votes, _ = tiny
    rows = read_rows(votes)
    short = tmp_path / "short.csv"
    write_votes(short, rows[:-3])
    with pytest.raises(DatasetError, match=rf"{len(rows) - 3} FER\+ rows, .*highest row index \+ 1 is {len(rows)}"):
        load_dataset(root, labels="ferplus", ferplus=short)


def test_votes_of_another_split_order_are_refused(tiny, tmp_path):
    root, votes, _ = tiny
    rows = read_rows(votes)
    rows[-1][0] = "Training"  # a PrivateTest image's row claims to be Training
    wrong = tmp_path / "wrong.csv"
    write_votes(wrong, rows)
    with pytest.raises(DatasetError, match="PrivateTest image, but .* is Training"):
        load_dataset(root, labels="ferplus", ferplus=wrong)


def test_files_without_a_row_index_say_how_to_name_them(tmp_path):
    folder = tmp_path / "faces" / "train" / "happy"
    folder.mkdir(parents=True)
    for i in range(3):
        write_png(folder / f"face{i}.png", np.zeros((48, 48), np.uint8))
    votes = tmp_path / "votes.csv"
    write_votes(votes, [vote_row("Training", i, {"happiness": 10}) for i in range(3)])
    with pytest.raises(DatasetError, match=r"face0.png: no FER2013 row.*_<row>\.png"):
        load_dataset(tmp_path / "faces", labels="ferplus", ferplus=votes)


def test_kaggle_csv_rows_are_the_original_rows(tmp_path):
    data_csv = tmp_path / "fer2013.csv"
    pixels = " ".join(["128"] * 48 * 48)
    usages = ["Training"] * 8 + ["PublicTest", "PrivateTest"]
    with open(data_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows([[6, pixels, u] for u in usages])
    names = ["happiness", "contempt", "unknown", "sadness", "anger", "fear", "surprise", "neutral", "disgust", "contempt"]
    votes = tmp_path / "fer2013new.csv"
    write_votes(votes, [vote_row(u, i, {n: 8}) for i, (u, n) in enumerate(zip(usages, names))])
    data = load_dataset(data_csv, labels="ferplus", ferplus=votes, val_fraction=0, test_fraction=0)
    assert [FERPLUS.names[i] for i in data["train"].labels] == ["happy", "contempt", "sad", "angry", "fear",
                                                               "surprise", "neutral"]
    assert data["test"].labels.tolist() == [FERPLUS.index("contempt")] and data.dropped == {fp.TOP_UNKNOWN: 1}
    write_votes(votes, [vote_row(u, i, {n: 8}) for i, (u, n) in enumerate(zip(usages, names))] * 2)
    with pytest.raises(DatasetError, match=r"20 FER\+ rows, but .* has 10 rows"):
        load_dataset(data_csv, labels="ferplus", ferplus=votes)


def test_inspect_with_ferplus(tiny, capsys, tmp_path):
    root, votes, _ = tiny
    summary = tmp_path / "summary.json"
    assert main(["inspect", str(root), "--labels", "ferplus", "--ferplus", str(votes), "--json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "contempt" in out and "5 image(s) dropped" in out and "top vote tied: 2" in out
    assert json.loads(summary.read_text())["dropped"][fp.TIED] == 2
    assert main(["inspect", str(root), "--labels", "ferplus"]) != 0  # no votes file: one-line error
    assert "fer2013new.csv" in capsys.readouterr().err


def test_classify_with_ferplus_labels_writes_a_model_card(tiny, tmp_path):
    from test_classify import run_classify

    root, votes, _ = tiny
    out, summary = run_classify(tmp_path, fer=str(root), labels="ferplus", ferplus=str(votes), batch_size=8)
    assert summary["classes"] == list(FERPLUS_CLASSES) and summary["labels"].startswith("ferplus")
    assert summary["ferplus_dropped"][fp.TIED] == 2
    card = (out / "real" / "model" / "README.md").read_text()
    for text in ("labels: ferplus", "contempt", str(root), "| val |", "| test |", "macro-F1", " cores"):
        assert text in card, text
    model = json.loads((out / "real" / "model" / "model.json").read_text())
    assert model["classes"] == list(FERPLUS_CLASSES)


def test_ferplus_without_votes_file_fails_before_any_stage(tiny, tmp_path):
    from fertransfer.pipelines import ConfigError, load_config, run_pipeline
    from fertransfer.pipelines.config import default_config_text

    config = tmp_path / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run"}, "data": {"fer": str(tiny[0]), "labels": "ferplus"}}))
    for stage in ("cyclegan", "augment", "classify"):
        with pytest.raises(ConfigError, match=r"\[data\]\.ferplus: labels = \"ferplus\" needs"):
            run_pipeline(load_config(config), stage)
    assert not (tmp_path / "run").exists()


@pytest.mark.realdata
def test_real_ferplus_file_matches_fer2013(shared_data):
    votes = fp.read_votes(shared_data / "ferplus" / "fer2013new.csv")
    assert len(votes) == 35_887
    data = load_dataset(shared_data / "fer2013" / "train", labels="ferplus",
                        ferplus=shared_data / "ferplus" / "fer2013new.csv", val_fraction=0, test_fraction=0)
    assert len(data.class_names) == 8 and data.counts()["train"]["contempt"] > 0
    assert len(data["train"]) + sum(data.dropped.values()) == 28_709


def test_cyclegan_and_augment_read_ferplus_labels(tiny):
    from fertransfer.augment.build import load_fer as augment_fer
    from fertransfer.cyclegan.data import load_fer as domain_b

    root, votes, _ = tiny
    b = domain_b(root, ["train"], ["contempt"], 1, 48, 0, "ferplus", votes)
    assert len(b) == PER_USAGE["Training"] and set(b.labels.tolist()) == {FERPLUS.index("contempt")}
    with pytest.raises(DatasetError, match="fer_classes.*unknown class 'contempt'"):
        domain_b(root, ["train"], ["contempt"], 1, 48, 0)  # FER's own labels have no contempt
    data = augment_fer(root, 0, "ferplus", votes)
    assert data.class_names == FERPLUS.names and data.dropped[fp.TIED] == 2


def test_stages_fingerprint_the_votes_file_only_with_its_labels(tmp_path):
    from fertransfer.pipelines import get_stage, load_config
    from fertransfer.pipelines.config import default_config_text
    from fertransfer.pipelines.runner import input_paths

    config = tmp_path / "pipeline.toml"
    for labels, expected in (("ferplus", True), ("fer", False)):
        config.write_text(default_config_text({"data": {"fer": "fer", "labels": labels, "ferplus": "votes.csv"}}))
        loaded = load_config(config)
        for name in ("cyclegan", "augment", "classify"):
            names = [p.name for p in input_paths(loaded, get_stage(name))]
            assert "fer" in names and ("votes.csv" in names) == expected, (name, labels)
    section = default_config_text({}).split("[data]", 1)[1].split("\n[", 1)[0]
    assert 'labels = "fer"' in section and 'ferplus = ""' in section
