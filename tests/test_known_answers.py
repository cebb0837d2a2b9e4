"""Known-answer tests: each fails when the product is wrong, not only when the plumbing is.

- The translation judge: an identity "translation" keeps everything the judge sees (agreement
  1.0, label preservation = its accuracy on the sources); a translation that swaps images across
  the set agrees only by chance.
- The CycleGAN trainer learns a toy mapping, colour inversion between two small domains, to a
  stated error (the untrained generator is at 0.6).
- Exact resume from a step between two checkpoints: the rows the interrupted run logged after
  its last checkpoint are dropped from losses.csv and swd.csv and written again, once.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fertransfer.classify.stage import ClassifyOptions, run
from fertransfer.cyclegan.data import Domains
from fertransfer.cyclegan.train import TrainConfig, train
from fertransfer.cyclegan.translate import Translator
from fertransfer.data import FER, load_dataset, write_png
from fertransfer.expression.models import load_classifier, predict_labels
from fertransfer.pipelines.options import DataOptions, RunOptions
from fertransfer.pipelines.stage import StageContext

# --- the translation judge ----------------------------------------------------------------------


def fake_augment(folder: Path, smileys: Path, seed: int = 0) -> tuple[Path, list[str]]:
    """An augment folder whose `test` split is the identity (each translation is its source) and
    whose `val` split swaps images across the set (a random permutation: labels permuted)."""
    test = load_dataset(smileys, seed=seed)["test"]
    files = [str(f) for f in test.files]
    permutation = np.random.default_rng(seed).permutation(len(files))
    rows = []
    for split, order in (("test", np.arange(len(files))), ("val", permutation)):
        for i, k in enumerate(order):
            name = f"translated/{split}/{FER.names[test.labels[i]]}/{i:04d}.png"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            write_png(folder / name, cv2.imread(files[k], cv2.IMREAD_GRAYSCALE))
            rows.append({"file": name, "label": FER.names[test.labels[i]], "source_file": files[i], "split": split,
                         "checkpoint": "none"})
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder, files


def test_judge_agreement_is_1_for_the_identity_and_chance_for_a_permutation(smileys, tmp_path):
    augment, sources = fake_augment(tmp_path / "augment", smileys)
    out = tmp_path / "classify.partial"
    out.mkdir()
    options = ClassifyOptions(epochs=6, width=16, batch_size=32, patience=0, tta="flip")
    ctx = StageContext(name="classify", options=options, run=RunOptions(device="cpu"), run_dir=tmp_path,
                       out_dir=out, artifacts={"augment.translations": augment / "labels.csv"}, config_dir=tmp_path,
                       log=logging.getLogger("test.known"), data=DataOptions(fer=str(smileys)))
    judge = run(ctx)["translation_judge"]["splits"]

    identity = judge["test"]
    assert identity["judge_agreement"]["overall"] == 1.0
    assert identity["label_preservation"]["overall"] == identity["source_accuracy"]["overall"] > 0.5
    assert all(v in (None, 1.0) for v in identity["judge_agreement"]["per_class"].values())

    # A random permutation of the images: the judge agrees with itself as often as two draws from
    # its own label distribution match, sum_k q_k^2.
    model = load_classifier(out / "real" / "model")
    images = np.stack([cv2.imread(s, cv2.IMREAD_GRAYSCALE)[..., None] for s in sources])
    predicted, _ = predict_labels(model, images)
    q = np.bincount(predicted, minlength=len(FER.names)) / len(predicted)
    chance = float((q**2).sum())
    permuted = judge["val"]
    assert chance < 0.5 and abs(permuted["judge_agreement"]["overall"] - chance) < 0.15, (permuted, chance)
    assert permuted["source_accuracy"] == identity["source_accuracy"]  # the same sources, the same judge


# --- the CycleGAN learns a toy mapping ----------------------------------------------------------


def blobs(count: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A yellow disc on dark blue, at random places and sizes: domain A (its inversion is domain B)."""
    images = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        image = np.empty((size, size, 3), np.uint8)
        image[:] = (40, 20, 160)
        x, y = rng.integers(3, size - 3, 2)
        cv2.circle(image, (int(x), int(y)), int(rng.integers(2, 5)), (230, 200, 30), -1)
        images[i] = image
    return images


def inversion_error(tmp_path: Path, steps: int, ngf: int, lr: float) -> tuple[float, float]:
    """Mean absolute error (0..1) of G_AB against the exact inversion on held-out A, after training
    on unpaired A and inverted B; and the same for the untranslated images (the starting point)."""
    rng = np.random.default_rng(0)
    size = 16
    domains = Domains(blobs(64, rng, size + 2), 255 - blobs(64, rng, size + 2), blobs(16, rng, size),
                      255 - blobs(16, rng, size), {})
    cfg = TrainConfig(image_size=size, load_size=size + 2, a_channels=3, b_channels=3, generator="resnet_6blocks",
                      ngf=ngf, ndf=ngf, n_layers=2, steps=steps, checkpoint_every=steps, sample_every=steps,
                      sample_images=2, lambda_identity=0.0, lambda_expression=0.0, lr=lr, batch_size=4, threads=1, deterministic=True,
                      device="cpu", precision="fp32")
    train(cfg, domains, tmp_path)
    translator = Translator.from_checkpoint(tmp_path / "checkpoints" / "latest.pt", "AtoB", "cpu")
    held = domains.held_a.astype(np.float64)
    error = np.abs(translator.translate(domains.held_a).astype(np.float64) - (255 - held)).mean() / 255
    return float(error), float(np.abs(held - (255 - held)).mean() / 255)


def test_cyclegan_learns_colour_inversion_roughly_in_60_steps(tmp_path):
    """Measured: 0.095 (untranslated: 0.609), deterministic on a CPU in fp32; 8.6 s on the 2-core machine at load 5."""
    error, untranslated = inversion_error(tmp_path, steps=60, ngf=4, lr=0.004)
    assert untranslated > 0.55 and error < 0.2


@pytest.mark.slow
def test_cyclegan_learns_colour_inversion_in_200_steps(tmp_path):
    """Measured: 0.072 (untranslated: 0.609); 21 s on the 2-core machine at load 5."""
    error, untranslated = inversion_error(tmp_path, steps=200, ngf=8, lr=0.002)
    assert untranslated > 0.55 and error < 0.1


# --- exact resume from a step between checkpoints ------------------------------------------------


def random_domains() -> Domains:
    rng = np.random.default_rng(0)

    def smooth(n: int, c: int, s: int) -> np.ndarray:
        noise = rng.integers(0, 255, (n, 6, 6, c), dtype=np.uint8)
        return np.stack([cv2.resize(x, (s, s)).reshape(s, s, c) for x in noise])

    return Domains(smooth(12, 3, 18), smooth(12, 1, 18), smooth(16, 3, 16), smooth(16, 1, 16), {})


def test_resume_from_a_step_between_checkpoints_continues_exactly(tmp_path):
    """Stopped at step 6 (checkpoint at 4, samples and SWD at 3 and 6): the resumed run goes back to
    step 4, and its logs hold every step once, as the uninterrupted run's do."""
    cfg = TrainConfig(image_size=16, load_size=18, ngf=4, ndf=4, n_layers=2, steps=8, checkpoint_every=4,
                      sample_every=3, sample_images=2, threads=1, deterministic=True, device="cpu", lambda_expression=0.0)
    domains = random_domains()
    train(cfg, domains, tmp_path / "straight")
    train(cfg, domains, tmp_path / "split", stop_at=6)
    logged = lambda p, name: [r.rsplit(",", 1)[0] if name == "losses.csv" else r  # noqa: E731 (seconds differ)
                              for r in (p / name).read_text().splitlines()]
    assert [r.split(",")[0] for r in logged(tmp_path / "split", "losses.csv")][-2:] == ["5", "6"]  # past step 4
    assert logged(tmp_path / "split", "swd.csv")[-1].startswith("6,")
    second = train(cfg, domains, tmp_path / "split", resume=True)
    assert second["resumed_from_step"] == 4 and second["steps_this_run"] == 4
    for name in ("losses.csv", "swd.csv"):
        assert logged(tmp_path / "straight", name) == logged(tmp_path / "split", name), name
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "step_00000008.pt", weights_only=False)["models"]
    split = torch.load(tmp_path / "split" / "checkpoints" / "step_00000008.pt", weights_only=False)["models"]
    for net in straight:
        assert all(torch.equal(straight[net][k], split[net][k]) for k in straight[net]), net
