"""experiments/sharpness.py: how sharp a set's faces are at the classifier's input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from fertransfer.data import write_png
from fertransfer.data.inspect import sharpness_values

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "sharpness.py"
spec = importlib.util.spec_from_file_location("sharpness", SCRIPT)
sharpness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sharpness)


def test_softened_faces_score_lower_and_contrast_does_not_count():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (20, 48, 48, 1), dtype=np.uint8)
    sharp = sharpness_values(faces)
    assert (sharpness_values(sharpness.round_trip(faces, 48)) < sharp).all()
    assert sharpness_values(sharpness.resampled(faces, 0)).mean() < sharp.mean()
    dim = (faces // 4).astype(np.uint8)  # a quarter of the contrast, the same picture
    np.testing.assert_allclose(sharpness_values(dim), sharp, rtol=0.1)


def test_the_script_prints_a_row_per_set_and_names_a_missing_folder(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for name, blur in (("crisp", 0), ("soft", 5)):
        for i in range(4):
            face = rng.integers(0, 256, (96, 96), dtype=np.uint8)
            if blur:
                face = cv2.GaussianBlur(face, (blur, blur), 0)
            (tmp_path / name / "happy").mkdir(parents=True, exist_ok=True)
            write_png(tmp_path / name / "happy" / f"{i}.png", face)
    assert sharpness.main([f"crisp={tmp_path / 'crisp'}", f"soft={tmp_path / 'soft'}", "--soften", "crisp"]) == 0
    rows = {line.split(" | ")[0].strip("| "): float(line.split(" | ")[2]) for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"crisp", "crisp, resample_blur (every image)", "crisp, 48 -> 64 -> 48 px", "soft"}
    assert rows["soft"] < rows["crisp"] and rows["crisp, resample_blur (every image)"] < rows["crisp"]
    assert sharpness.main([f"gone={tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err
