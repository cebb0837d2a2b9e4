"""experiments/compare_runs.py: sets from different run folders, paired by seed, on known cases."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fertransfer.data import FER_CLASSES, write_png

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

CLASSES = ("angry", "happy")  # two clips of four frames each


@pytest.fixture()
def person_test(tmp_path) -> Path:
    for name in CLASSES:
        (tmp_path / "person_test" / name).mkdir(parents=True)
        for frame in range(4):
            write_png(tmp_path / "person_test" / name / f"{name}_clip_{frame:04d}.png", np.zeros((8, 8), np.uint8))
    return tmp_path / "person_test"


def write_set(folder: Path, right_per_seed: dict[int, int], fer: float = 0.6) -> Path:
    """A set folder whose model gets the first `right` of the 8 frames right (angry 0-3, happy 4-7)."""
    truth = np.array([FER_CLASSES.index("angry")] * 4 + [FER_CLASSES.index("happy")] * 4)
    for seed, right in right_per_seed.items():
        path = folder if seed == min(right_per_seed) else folder / f"seed_{seed}"
        path.mkdir(parents=True, exist_ok=True)
        predicted = truth.copy()
        predicted[right:] = FER_CLASSES.index("sad")
        probs = np.eye(7, dtype=np.float32)[predicted]
        np.savez(path / "person_predictions.npz", labels=predicted, probs=probs)
        (path / "metrics.json").write_text(json.dumps({"seed": seed, "classes": list(FER_CLASSES),
                                                       "test": {"accuracy": fer}}))
    return folder


def test_identical_sets_differ_by_zero_with_an_interval_of_width_zero(tmp_path, person_test, capsys):
    real = write_set(tmp_path / "a" / "real", {0: 8, 1: 4})
    same = write_set(tmp_path / "b" / "real_synthetic", {0: 8, 1: 4})
    result = compare_runs.compare({"real": real, "same": same}, person_test, "real", draws=200)
    frames = result["person"]["same"]["frames"]
    assert result["seeds"] == [0, 1] and result["clips"] == 2
    assert frames["mean"] == pytest.approx(0.75) and frames["difference"]["mean"] == 0.0
    assert frames["difference"]["interval"] == [0.0, 0.0]
    assert result["fer_test"]["same"]["difference"]["mean"] == 0.0
    # seed 1 gets angry right and every happy frame wrong: clips by majority 1.0 and 0.5
    assert result["person"]["real"]["clips_majority"]["values"] == [1.0, 0.5]
    assert compare_runs.main([f"real={real}", f"same={same}", "--person-test", str(person_test),
                              "--bootstrap", "50"]) == 0
    assert "| same − real | 0.0 | 0.0 [0.0, 0.0]" in capsys.readouterr().out


def test_a_better_set_and_mismatches(tmp_path, person_test, capsys):
    real = write_set(tmp_path / "a" / "real", {0: 4, 1: 4})
    better = write_set(tmp_path / "b" / "real_synthetic", {0: 8, 1: 6}, fer=0.58)
    result = compare_runs.compare({"real": real, "better": better}, person_test, "real", draws=200)
    assert result["person"]["better"]["frames"]["difference"]["values"] == [0.5, 0.25]
    assert result["fer_test"]["better"]["difference"]["mean"] == pytest.approx(-0.02)
    other_seeds = write_set(tmp_path / "c" / "real_synthetic", {0: 8, 2: 8})
    assert compare_runs.main([f"real={real}", f"other={other_seeds}", "--person-test", str(person_test)]) == 2
    assert "seeds [0, 2], the first set has [0, 1]: no pairing" in capsys.readouterr().err
    assert compare_runs.main([f"real={tmp_path}", "--person-test", str(person_test)]) == 2
    assert "no metrics.json and person_predictions.npz" in capsys.readouterr().err


def test_the_chart_names_the_reference(tmp_path, person_test, capsys):
    """--chart draws the stage's comparison_seeds.png for sets of different runs, the differences
    taken from the reference given (here a control, not `real`)."""
    from PIL import Image

    control = write_set(tmp_path / "a" / "real_classic", {0: 4, 1: 4})
    better = write_set(tmp_path / "b" / "real_synthetic", {0: 8, 1: 6})
    chart = tmp_path / "chart.png"
    assert compare_runs.main([f"real+synthetic={better}", f"real+classic={control}", "--reference", "real+classic",
                              "--person-test", str(person_test), "--bootstrap", "50", "--chart", str(chart)]) == 0
    assert "| real+synthetic − real+classic |" in capsys.readouterr().out
    width, height = Image.open(chart).size
    assert width > 2.5 * height  # two panels (one alone is 8 x 4.8): the accuracies, the differences from the reference
