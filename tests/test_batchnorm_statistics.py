"""BatchNorm statistics re-estimated on other images, weights kept (expression.cnn.reestimate_batchnorm),
and experiments/batchnorm_statistics.py, which scores models with and without."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fertransfer.data import FER_CLASSES, load_dataset, write_png
from fertransfer.expression.cnn import CnnConfig, reestimate_batchnorm, train_cnn
from fertransfer.expression.models import save_classifier

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "batchnorm_statistics.py"
spec = importlib.util.spec_from_file_location("batchnorm_statistics", SCRIPT)
batchnorm_statistics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(batchnorm_statistics)

TINY = {"width": 4, "batch_size": 32, "patience": 0, "tta": "center", "ema": 0}


@pytest.fixture(scope="module")
def trained(smileys):
    data = load_dataset(smileys)
    train, val = data["train"], data["val"]
    return data, train_cnn(train.images, train.labels, val.images, val.labels, list(FER_CLASSES),
                           CnnConfig(**TINY, max_steps=6), device="cpu").classifier


def statistics(classifier) -> dict[str, torch.Tensor]:
    return {k: v for k, v in classifier.model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def test_statistics_are_reestimated_and_weights_kept(trained):
    data, classifier = trained
    images = data["train"].images
    spoiled = reestimate_batchnorm(classifier, images)  # a copy to spoil
    for buffer in statistics(spoiled).values():
        buffer.add_(5.0)
    fixed = reestimate_batchnorm(spoiled, images)
    reference = reestimate_batchnorm(classifier, images)
    for key, value in statistics(reference).items():
        assert torch.allclose(statistics(fixed)[key], value, atol=1e-5), key  # the spoiling is gone
        assert not torch.equal(statistics(spoiled)[key], value)
    for key, value in classifier.model.state_dict().items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(fixed.model.state_dict()[key], value), key  # weights untouched
    assert not fixed.model.training and classifier.model is not fixed.model


def test_the_script_scores_every_seed_of_a_set(trained, smileys, tmp_path, capsys):
    _, classifier = trained
    for folder, seed in ((tmp_path / "set", 0), (tmp_path / "set" / "seed_1", 1)):
        save_classifier(classifier, folder / "model")
        (folder / "metrics.json").write_text(json.dumps({"seed": seed}))
    save_classifier(classifier, tmp_path / "single")
    assert batchnorm_statistics.model_folders("one", tmp_path / "single") == {"one": tmp_path / "single"}
    out = tmp_path / "rows.json"
    assert batchnorm_statistics.main([f"tuned={tmp_path / 'set'}", "--fer", str(smileys), "--images", "64",
                                      "--tta", "center", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"tuned seed 0", "tuned seed 1"}
    assert rows["tuned seed 0"] == rows["tuned seed 1"]  # the same model twice
    assert "| tuned seed 1 |" in capsys.readouterr().out
    assert batchnorm_statistics.main([f"x={tmp_path / 'nothing'}", "--fer", str(smileys)]) == 2
    assert "neither a model folder" in capsys.readouterr().err


def test_statistics_from_a_folder_of_faces(trained, smileys, tmp_path, capsys):
    data, classifier = trained
    save_classifier(classifier, tmp_path / "model")
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, image in enumerate(data["train"].images[:5]):
        write_png(faces / f"clip_{i:04d}.png", image)
    assert batchnorm_statistics.main([f"m={tmp_path / 'model'}", "--fer", str(smileys), "--images", "40",
                                      "--statistics-from", str(faces)]) == 0
    assert f"5 faces of {faces} (40 crops)" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert batchnorm_statistics.main([f"m={tmp_path / 'model'}", "--fer", str(smileys),
                                      "--statistics-from", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
