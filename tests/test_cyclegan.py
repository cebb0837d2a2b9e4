"""cyclegan: networks, losses, SWD, exact resume, checkpoint checks, translation, the stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fertransfer.cyclegan.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_newest_valid,
    step_checkpoints,
)
from fertransfer.cyclegan.data import Domains
from fertransfer.cyclegan.expression import ExpressionConsistency
from fertransfer.cyclegan.losses import GAN_MODES, discriminator_loss, generator_loss, gradient_penalty
from fertransfer.cyclegan.models import GENERATORS, build_discriminator, build_generator
from fertransfer.cyclegan.swd import swd
from fertransfer.cyclegan.tensors import match_channels
from fertransfer.cyclegan.testing import tiny_checkpoint
from fertransfer.cyclegan.train import Discriminators, Generators, TrainConfig, structure_distance, train
from fertransfer.cyclegan.translate import Translator
from fertransfer.data import FER
from fertransfer.expression.cnn import CnnClassifier, CnnConfig, FaceNet


def tiny_config(**overrides) -> TrainConfig:
    values = dict(image_size=16, load_size=18, ngf=4, ndf=4, n_layers=2, steps=8, checkpoint_every=4,
                  sample_every=4, sample_images=2, threads=1, deterministic=True, device="cpu", lambda_expression=0.0)
    return TrainConfig(**{**values, **overrides})


def random_domains(seed: int = 0, size: int = 18, held: int = 16, held_size: int = 16) -> Domains:
    rng = np.random.default_rng(seed)

    def smooth(n: int, c: int, s: int) -> np.ndarray:
        noise = rng.integers(0, 255, (n, 6, 6, c), dtype=np.uint8)
        return np.stack([cv2.resize(x, (s, s)).reshape(s, s, c) for x in noise])

    return Domains(smooth(12, 3, size), smooth(12, 1, size), smooth(held, 3, held_size), smooth(held, 1, held_size), {})


def trained_with_and_without(tmp_path: Path, model: str, **option) -> tuple[dict, dict, dict]:
    """The nets at the last step of three tiny runs of `model`: with `option` straight through, with
    it stopped halfway and resumed, and without it (for a discriminator-side option: D must differ)."""
    extra = {"generator": "resnet_6blocks_residual_resize", "nce_patches": 8} if model == "cut" else {}
    domains = random_domains()
    cfg = tiny_config(model=model, **option, **extra)
    train(cfg, domains, tmp_path / "straight")
    train(cfg, domains, tmp_path / "split", stop_at=4)
    train(cfg, domains, tmp_path / "split", resume=True)
    train(tiny_config(model=model, **extra), domains, tmp_path / "plain")
    return tuple(load_checkpoint(tmp_path / name / "checkpoints" / "step_00000008.pt")["models"]
                 for name in ("straight", "split", "plain"))


# --- networks and losses ----------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_generators_map_channels_and_keep_size(name):
    g = build_generator(name, 3, 1, ngf=4, image_size=32)
    y = g(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert y.shape == (2, 1, 32, 32)
    assert y.abs().max() <= 1.0  # tanh output


def test_generators_and_discriminators_in_one_call_match_separate_calls():
    """The identity images go through each generator in one batch with the translations, and each
    discriminator scores real and fake in one batch: the same numbers as one call per image set."""
    torch.manual_seed(0)
    G_AB, G_BA = build_generator("resnet_6blocks", 3, 1, 4, 16), build_generator("resnet_6blocks", 1, 3, 4, 16)
    D_A, D_B = build_discriminator(3, 4, 2), build_discriminator(1, 4, 2)
    real_A, real_B = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    out = Generators(G_AB, G_BA, 3, 1, identity=True)(real_A, real_B)
    expected = {"fake_B": G_AB(real_A), "fake_A": G_BA(real_B), "same_B": G_AB(real_B.expand(-1, 3, -1, -1)),
                "same_A": G_BA(match_channels(real_A, 1))}
    expected |= {"rec_A": G_BA(expected["fake_B"]), "rec_B": G_AB(expected["fake_A"])}
    assert out.keys() == expected.keys()
    for name, image in expected.items():
        assert torch.allclose(out[name], image, atol=1e-5), name
    scores = Discriminators(D_A, D_B)(real_A, out["fake_A"], real_B, out["fake_B"])
    for score, expected_score in zip(scores, (D_A(real_A), D_A(out["fake_A"]), D_B(real_B), D_B(out["fake_B"]))):
        assert torch.allclose(score, expected_score, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet_6blocks_residual", "resnet_6blocks_residual_resize"])
def test_residual_generator_starts_as_the_identity_and_learns(name):
    g = build_generator(name, 1, 3, ngf=4, image_size=16)
    x = torch.rand(2, 1, 16, 16) * 1.8 - 0.9
    y = g(x)
    assert torch.allclose(y, x.expand(-1, 3, -1, -1), atol=1e-3)  # gray in, the same gray as RGB out
    (y - 1).pow(2).mean().backward()
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)
    assert g.body.model[-1].weight.grad.abs().sum() > 0  # the zero-initialised last layer learns first


def test_unet_rejects_sizes_that_are_not_powers_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        build_generator("unet", 3, 3, ngf=4, image_size=48)


def test_patch_discriminator_scores_patches_and_init_is_paper_normal():
    d = build_discriminator(3, ndf=64, n_layers=3)
    assert d(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)
    weights = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001


@pytest.mark.parametrize("mode", GAN_MODES)
def test_losses_prefer_correct_discriminators(mode):
    good_real, good_fake = torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -2.0)
    assert discriminator_loss(mode, good_real, good_fake) < discriminator_loss(mode, good_fake, good_real)
    assert generator_loss(mode, good_real) < generator_loss(mode, good_fake)


def test_gradient_penalty_is_positive_and_differentiable():
    d = build_discriminator(1, ndf=4, n_layers=2)
    gp = gradient_penalty(d, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
    gp.backward()
    assert gp.item() > 0 and next(d.parameters()).grad is not None


# --- SWD ---------------------------------------------------------------------------------


def test_swd_is_small_for_the_same_distribution_and_large_for_blur():
    rng = np.random.default_rng(0)
    images = np.stack([cv2.resize(x, (32, 32)) for x in rng.integers(0, 255, (120, 16, 16, 3), dtype=np.uint8)])
    blurred = np.stack([cv2.GaussianBlur(x, (9, 9), 4) for x in images[:60]])
    same = swd(images[:60], images[60:])["mean"]
    different = swd(blurred, images[60:])["mean"]
    assert different > 2 * same
    assert swd(images[:60], images[:60])["mean"] < same
    with pytest.raises(ValueError, match="shapes differ"):
        swd(images, images[:, :16, :16])


# --- training, exact resume, checkpoints -------------------------------------------------


def _weights(folder: Path) -> dict:
    return load_checkpoint(folder / "checkpoints" / "step_00000008.pt")["models"]


def tiny_expression(seed: int = 0) -> ExpressionConsistency:
    """A random, untrained FER classifier of the classify stage's kind, small enough for tests."""
    torch.manual_seed(seed)
    config = CnnConfig(width=4, crop=14)
    return ExpressionConsistency(CnnClassifier(FaceNet(7, 1, 4), list(FER.names), 1, 16, config))


def test_expression_jitter_moves_and_flips_the_translation_only_and_follows_torchs_seed():
    expression = tiny_expression()  # size 16, crop 14: centred, the crop starts at pixel 1
    image = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16) / 8 - 1  # a left-to-right ramp
    centred = expression.classifier_input(image)
    torch.manual_seed(3)
    shown = [expression.classifier_input(image, 2) for _ in range(12)]
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(shown, [expression.classifier_input(image, 2) for _ in range(12)]))
    assert any(not torch.equal(x, centred) for x in shown) and all(x.shape == centred.shape for x in shown)
    assert any(x[0, 0, 0, 0] > x[0, 0, 0, -1] for x in shown)  # some flipped (the ramp runs the other way)
    source = torch.rand(2, 1, 16, 16) * 2 - 1
    translated = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    assert torch.equal(expression(translated, source, 0), expression(translated, source))  # off: no randomness
    expression(translated, source, 2).backward()
    assert translated.grad.abs().sum() > 0


def test_expression_loss_reads_translations_as_fer_faces_and_trains_only_the_generator():
    expression = tiny_expression()
    source = torch.rand(3, 1, 16, 16) * 2 - 1
    translated = (torch.rand(3, 3, 20, 20) * 2 - 1).requires_grad_()
    loss = expression(translated, source)
    loss.backward()
    assert loss.item() > 0 and translated.grad.abs().sum() > 0  # RGB of another size: converted, differentiable
    assert all(p.grad is None and not p.requires_grad for p in expression.parameters())
    expression.train()
    assert not expression.net.training  # stays frozen (batch norm statistics, dropout)
    # Its least value is at a translation the classifier reads exactly as the source.
    same = expression(source.expand(-1, 3, -1, -1), source)
    assert same.item() <= loss.item()


def test_structure_loss_keeps_the_layout_not_the_tone():
    torch.manual_seed(0)
    face = torch.rand(2, 1, 16, 16) * 2 - 1
    rgb_darker = (face * 0.5 - 0.3).expand(-1, 3, -1, -1)  # another tone and contrast, the same layout
    assert structure_distance(face, face, 4).item() == 0.0
    assert structure_distance(rgb_darker, face, 4).item() < 0.05
    assert structure_distance(face.flip(-2), face, 4).item() > 0.3  # upside down: another layout


def test_structure_loss_with_a_crop_holds_only_the_inner_face():
    torch.manual_seed(0)
    face = torch.rand(2, 1, 20, 20) * 2 - 1
    new_frame = face.clone()
    new_frame[..., :3, :] = 1.0  # other hair, outline and background: the outer 3 pixels all round
    new_frame[..., -3:, :] = -1.0
    new_frame[..., :, :3] = 1.0
    new_frame[..., :, -3:] = -1.0
    assert structure_distance(new_frame, face, 2).item() > 0.1  # the whole image: the frame counts
    assert structure_distance(new_frame, face, 2, crop=0.7).item() == 0.0  # the inner 14x14 is the same
    new_mouth = face.clone()
    new_mouth[..., 12:16, 6:14] = -face[..., 12:16, 6:14]
    assert structure_distance(new_mouth, face, 2, crop=0.7).item() > 0.05


@pytest.mark.parametrize("lambda_expression", [0.0, 2.0])
def test_resume_continues_exactly(tmp_path, lambda_expression):
    """2K steps in one go == K steps, interruption, resume, K steps (deterministic CPU), with
    and without the expression loss."""
    domains = random_domains()
    cfg = tiny_config(lambda_expression=lambda_expression)
    expression = tiny_expression() if lambda_expression else None
    straight = train(cfg, domains, tmp_path / "straight", expression=expression)
    first = train(cfg, domains, tmp_path / "split", stop_at=4, expression=expression)
    assert first["steps"] == 4 and not (tmp_path / "split" / "checkpoints" / "step_00000008.pt").exists()
    second = train(cfg, domains, tmp_path / "split", resume=True, expression=expression)
    assert second["resumed_from_step"] == 4 and second["steps_this_run"] == 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    for net in ("G_AB", "G_BA", "D_A", "D_B"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    # The loss log continues too: same rows, no duplicates of the steps after the checkpoint.
    lines = lambda p: [r.rsplit(",", 1)[0] for r in (p / "losses.csv").read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "straight") == lines(tmp_path / "split")
    assert straight["swd"] == second["swd"]


def test_expression_loss_changes_training_and_is_off_at_zero(tmp_path):
    """On the paper's generator: the residual one starts as the identity, where a translation reads
    exactly as its source and the loss has no gradient yet."""
    domains = random_domains()
    # fp32: the untrained tiny classifier's gradient is so small that bf16 autocast (the default on
    # CPUs with AMX) rounds it away in the generator's backward; this test is about the plumbing.
    tiny = lambda **values: tiny_config(generator="resnet_6blocks", precision="fp32", **values)  # noqa: E731
    expression_values = lambda p: [float(r.split(",")[9]) for r in (p / "losses.csv").read_text().splitlines()[1:]]  # noqa: E731
    train(tiny(), domains, tmp_path / "plain")
    train(tiny(lambda_expression=0.0), domains, tmp_path / "zero", expression=tiny_expression())
    train(tiny(lambda_expression=5.0), domains, tmp_path / "on", expression=tiny_expression())
    train(tiny(lambda_structure=5.0), domains, tmp_path / "structure")
    plain, zero, on = (_weights(tmp_path / name) for name in ("plain", "zero", "on"))
    structure = _weights(tmp_path / "structure")
    assert not all(torch.equal(plain["G_BA"][k], structure["G_BA"][k]) for k in plain["G_BA"])
    assert all(torch.equal(plain["G_BA"][k], zero["G_BA"][k]) for k in plain["G_BA"])  # 0 turns it off
    assert not all(torch.equal(plain["G_BA"][k], on["G_BA"][k]) for k in plain["G_BA"])
    assert set(expression_values(tmp_path / "zero")) == {0.0} and min(expression_values(tmp_path / "on")) > 0
    with pytest.raises(ValueError, match="needs an expression classifier"):
        train(tiny(lambda_expression=1.0), domains, tmp_path / "missing")


def test_outputs_of_a_training_run(tmp_path):
    summary = train(tiny_config(keep_checkpoints=1), random_domains(), tmp_path)
    assert [s for s, _ in step_checkpoints(tmp_path / "checkpoints")] == [8]
    assert (tmp_path / "checkpoints" / "latest.pt").exists()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000004.png", "step_000008.png"]
    grid = cv2.imread(str(tmp_path / "samples" / "step_000008.png"))
    assert grid.shape[0] > 2 * 96 and grid.shape[1] > 6 * 96  # 2 rows, 6 tiles of >= 96 px
    rows = (tmp_path / "swd.csv").read_text().splitlines()
    assert rows[0].startswith("step,AtoB_translated") and len(rows) == 3
    assert summary["steps"] == 8 and summary["images_per_s"] > 0
    assert set(summary["swd"]) >= {"AtoB_translated", "AtoB_untranslated", "BtoA_translated", "BtoA_untranslated"}


@pytest.mark.parametrize("gan_mode,generator", [("vanilla", "resnet_6blocks"), ("hinge", "resnet_6blocks"),
                                                 ("wgangp", "resnet_6blocks"), ("lsgan", "unet")])
def test_every_objective_and_the_unet_train(tmp_path, gan_mode, generator):
    cfg = tiny_config(gan_mode=gan_mode, generator=generator, image_size=32, load_size=34, steps=3,
                      checkpoint_every=3, sample_every=3, lambda_identity=0.0)
    domains = random_domains(size=34, held=4, held_size=32)
    domains.held_b = domains.held_b[:1]  # a tiny domain: the grid gets as many rows as both have
    summary = train(cfg, domains, tmp_path)
    assert summary["steps"] == 3
    assert cv2.imread(str(tmp_path / "samples" / "step_000003.png")).shape[0] < 2 * 96
    rows = (tmp_path / "losses.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(np.isfinite(float(v)) for r in rows for v in r.split(",")[2:])


def test_resume_falls_back_from_a_corrupt_checkpoint(tmp_path, caplog):
    train(tiny_config(keep_checkpoints=3), random_domains(), tmp_path)
    newest = tmp_path / "checkpoints" / "step_00000008.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut off, as by a full disk
    with caplog.at_level(logging.WARNING, "fertransfer.cyclegan"):
        state = load_newest_valid(tmp_path / "checkpoints", tiny_config().architecture())
    assert state["step"] == 4
    assert "step_00000008.pt: not a readable checkpoint" in caplog.text
    assert newest.exists()  # kept for a person to look at
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(newest)


def test_checkpoint_of_another_architecture_names_the_mismatch(tmp_path):
    train(tiny_config(steps=4), random_domains(), tmp_path)
    with pytest.raises(CheckpointError, match=r"ngf: checkpoint 4, config 8.*b_channels: checkpoint 1, config 3"):
        load_newest_valid(tmp_path / "checkpoints", tiny_config(ngf=8, b_channels=3).architecture())
    with pytest.raises(CheckpointError, match="ngf: checkpoint 4, config 8"):
        train(tiny_config(steps=8, ngf=8), random_domains(), tmp_path, resume=True)


# --- translation -------------------------------------------------------------------------


def test_translator_api_converts_sizes_and_channels(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.pt", image_size=32, a_channels=3, b_channels=1)
    to_person = Translator.from_checkpoint(path, direction="BtoA", device="cpu")
    assert (to_person.image_size, to_person.in_channels, to_person.out_channels, to_person.direction) == (32, 1, 3, "BtoA")
    fer = np.random.default_rng(0).integers(0, 255, (5, 48, 48, 1), dtype=np.uint8)
    out = to_person.translate(fer, batch_size=2)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    # RGB input to a gray-input generator, and 2-D gray input, are converted first.
    assert to_person.translate(np.zeros((2, 40, 50, 3), np.uint8)).shape == (2, 32, 32, 3)
    to_fer = Translator.from_checkpoint(path, direction="AtoB", device="cpu")
    assert to_fer.translate(np.zeros((3, 20, 20), np.uint8)).shape == (3, 32, 32, 1)
    # Batching does not change the result.
    assert np.array_equal(to_person.translate(fer, batch_size=64), out)


def test_translator_loads_the_latest_export_of_a_training_run(tmp_path):
    train(tiny_config(steps=4), random_domains(), tmp_path)
    t = Translator.from_checkpoint(tmp_path / "checkpoints" / "latest.pt", direction="AtoB", device="cpu")
    assert t.step == 4 and t.translate(np.zeros((1, 16, 16, 3), np.uint8)).shape == (1, 16, 16, 1)
    with pytest.raises(ValueError, match="direction"):
        Translator.from_checkpoint(tmp_path / "checkpoints" / "latest.pt", direction="sideways")


def test_translate_command_converts_a_folder_and_reports_bad_files(tmp_path, capsys):
    from fertransfer.pipelines.cli import main

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", image_size=32)
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(source / f"face{i}.jpg"), np.full((40 + i, 40, 3), 60 * i, np.uint8))
    cv2.imwrite(str(source / "sub" / "gray.png"), np.full((48, 48), 128, np.uint8))
    argv = ["translate", "--checkpoint", str(ckpt), "--direction", "AtoB", "--device", "cpu", str(source), str(tmp_path / "out")]
    assert main(argv) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["face0.jpg.png", "face1.jpg.png", "face2.jpg.png", "sub/gray.png"]
    assert cv2.imread(str(tmp_path / "out" / "face0.jpg.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)

    (source / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(argv) == 1
    assert "broken.jpg" in capsys.readouterr().err
    assert (tmp_path / "out" / "face2.jpg.png").exists()

    (tmp_path / "bad.pt").write_bytes(b"nonsense")
    assert main([*argv[:1], "--checkpoint", str(tmp_path / "bad.pt"), *argv[3:]]) == 1
    assert "bad.pt: not a readable checkpoint" in capsys.readouterr().err


# --- the stage, through the runner --------------------------------------------------------


def face_folder(root: Path, count: int = 12) -> Path:
    """RGB 'faces' of mixed sizes, and one grayscale PNG: domain A as extract might leave it."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    for i in range(count):
        size = (40, 40) if i % 3 else (56, 44)
        image = cv2.resize(rng.integers(0, 255, (5, 5, 3), dtype=np.uint8), size)
        cv2.imwrite(str(root / f"f{i:02d}.jpg"), image)
    cv2.imwrite(str(root / "gray.png"), np.full((30, 30), 90, np.uint8))
    return root


def write_config(tmp_path: Path, faces: Path, fer: Path, **extra) -> Path:
    options = dict(faces=str(faces), image_size=16, ngf=4, ndf=4, n_layers=2, steps=6,
                   checkpoint_every=3, sample_every=3, swd_images=8, threads=1, deterministic=True,
                   expression_epochs=1, expression_width=4)
    options.update(extra)
    data = {k: options.pop(k) for k in ("faces", "labels", "ferplus") if k in options}
    lines = ["[run]", 'dir = "run"', 'device = "cpu"', "[data]", f"fer = {json.dumps(str(fer))}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    lines += ["[cyclegan]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    path = tmp_path / "pipeline.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stage_runs_resumes_and_records(tmp_path, smileys, monkeypatch):
    from fertransfer.cyclegan import train as train_module
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, fer_classes=["happy", "sad"]))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "plot_losses", interrupted)  # dies after training, before the manifest
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, "cyclegan")
    assert (tmp_path / "run" / "cyclegan.partial" / "checkpoints" / "step_00000006.pt").exists()
    monkeypatch.undo()

    (status,) = run_pipeline(config, "cyclegan")
    out = tmp_path / "run" / "cyclegan"
    summary = status.manifest["summary"]
    assert summary["resumed_from_step"] == 6 and summary["steps_this_run"] == 0
    # The expression classifier trained before the interruption is the one the run kept.
    assert summary["expression_classifier"]["source"] == "trained here (kept from the interrupted run)"
    assert 0.0 <= summary["expression_classifier"]["held_out_accuracy"] <= 1.0
    assert (out / "expression_classifier" / "model.json").is_file()
    assert summary["domains"]["A"]["images"] == 13
    assert summary["domains"]["B"]["classes"] == ["happy", "sad"]
    for name in ("checkpoints/latest.pt", "samples/final.png", "samples/step_000003.png", "losses.csv",
                 "loss_curve.png", "swd.csv"):
        assert (out / name).exists(), name
    assert summary["swd"]["step"] == 6 and set(summary["swd"]["AtoB"]) == {"translated", "untranslated"}
    assert len((out / "losses.csv").read_text().splitlines()) == 7  # header + 6 steps, none twice
    assert Translator.from_checkpoint(out / "checkpoints" / "latest.pt", "BtoA", "cpu").out_channels == 3


def test_stage_reports_an_empty_domain(tmp_path, smileys):
    from fertransfer.data import DatasetError
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    (tmp_path / "faces").mkdir()
    config = load_config(write_config(tmp_path, tmp_path / "faces", smileys))
    with pytest.raises(DatasetError, match="faces: no readable images"):
        run_pipeline(config, "cyclegan")


def test_stage_checks_the_expression_classifier(tmp_path, smileys):
    from fertransfer.expression.models import save_classifier
    from fertransfer.pipelines.config import ConfigError, load_config
    from fertransfer.pipelines.runner import run_pipeline
    from fertransfer.pipelines.stage import StageError

    faces = face_folder(tmp_path / "faces")
    # Domain B without labels: a config error before any work.
    config = load_config(write_config(tmp_path, faces, faces))
    with pytest.raises(ConfigError, match=r"\[cyclegan\]\.lambda_expression > 0 .* has no class or split folders"):
        run_pipeline(config, "cyclegan")
    assert not (tmp_path / "run").exists()
    # A classifier of another class set: an error naming both lists.
    other = tiny_expression()
    classifier = CnnClassifier(other.net, ["happy", "sad", "angry", "fear", "surprise", "neutral", "disgust"], 1, 16,
                               CnnConfig(width=4, crop=14))
    save_classifier(classifier, tmp_path / "model")
    config = load_config(write_config(tmp_path, faces, smileys, expression_classifier=str(tmp_path / "model")))
    with pytest.raises(StageError, match=r"classes \['happy', 'sad'.*differ from domain B's \['angry', 'disgust'"):
        run_pipeline(config, "cyclegan")


def test_stage_takes_faces_from_extract_when_not_given():
    from fertransfer.cyclegan.stage import STAGE, CycleganOptions
    from fertransfer.pipelines.options import DataOptions

    assert STAGE.upstream(CycleganOptions()) == ["extract"]
    assert STAGE.upstream(CycleganOptions(), DataOptions(faces="my/faces")) == []
    assert STAGE.resumable


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path, smileys):
    """The torchrun/DDP path on CPU (gloo): two ranks train, rank 0 writes the outputs."""
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, processes=2))
    (status,) = run_pipeline(config, "cyclegan")
    summary = status.manifest["summary"]
    assert summary["processes"] == 2 and summary["steps"] == 6
    state = load_checkpoint(tmp_path / "run" / "cyclegan" / "checkpoints" / "step_00000006.pt")
    assert len(state["rng"]) == 2  # each rank's batches and pools, for resuming


def test_stage_choices_name_every_network_and_objective():
    """The stage keeps its own copies of the names (to check a config without importing torch)."""
    from fertransfer.cyclegan import losses, models, stage

    assert stage.GENERATORS == models.GENERATORS and stage.GAN_MODES == losses.GAN_MODES


def test_an_unknown_generator_is_a_config_error_naming_the_known_ones_before_any_stage(tmp_path, smileys, capsys):
    from fertransfer.cyclegan.stage import GENERATORS
    from fertransfer.pipelines.cli import main

    config = write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, generator="no_such_net")
    config.write_text(config.read_text() + '[extract]\ninputs = ["nowhere.mp4"]\n')  # a stage before cyclegan
    assert main(["run", "all", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "[cyclegan].generator: 'no_such_net' is not one of" in err
    assert all(name in err for name in GENERATORS)
    assert not (tmp_path / "run").exists()  # nothing ran, not even extract


# --- the person score in the stage ---------------------------------------------------------------


PERSON_SCORE = dict(steps=4, checkpoint_every=4, sample_every=4, lambda_expression=0.0, eval_images=30,
                    person_score_steps=30)


def test_stage_reports_the_person_score_with_a_warning_and_the_judge(tmp_path, smileys, caplog):
    from fertransfer.expression.models import save_classifier
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    torch.manual_seed(0)
    save_classifier(CnnClassifier(FaceNet(7, 1, 4), list(FER.names), 1, 16, CnnConfig(width=4, crop=14)),
                    tmp_path / "judge")
    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces", 39), smileys, **PERSON_SCORE,
                                      judge=str(tmp_path / "judge")))
    with caplog.at_level("WARNING"):
        (status,) = run_pipeline(config, "cyclegan")
    translation = status.manifest["summary"]["translation"]
    assert translation["person_crops"] == 8 and "only 8 held-out person crops" in translation["warning"]
    assert "only 8 held-out person crops" in caplog.text
    assert translation["images"] == 30 and translation["split"] == "test"
    score = translation["person_score"]
    assert 0 <= score["overall"] <= 1 and set(score["per_class"]) <= set(FER.names)
    assert set(translation["controls"]) == {"untranslated_sources", "held_out_person_crops",
                                            "held_out_person_crops_count", "blends"}
    assert set(translation["controls"]["blends"]) == {"1", "2", "4"}  # hybrids at each detail scale
    assert translation["judge"]["images"] == 30 and 0 <= translation["judge"]["judge_agreement"]["overall"] <= 1
    assert (tmp_path / "run" / "cyclegan" / "person_score.pt").is_file()


def test_the_judge_on_the_persons_own_labelled_faces(tmp_path, caplog):
    """The yardstick beside judge agreement: the judge on extract's labelled person_test/ (a subset
    of the classes), through the generator's size; none without labelled faces, a warning when
    the folder holds no class folders."""
    from types import SimpleNamespace

    from fertransfer.cyclegan.stage import _judge_on_the_person
    from fertransfer.data import write_png

    torch.manual_seed(0)
    judge = CnnClassifier(FaceNet(7, 1, 4), list(FER.names), 1, 16, CnnConfig(width=4, crop=14))
    rng = np.random.default_rng(0)
    person_test = tmp_path / "person_test"
    for name in ("angry", "happy"):
        (person_test / name).mkdir(parents=True)
        for i in range(3):
            write_png(person_test / name / f"clip_{i}.png", rng.integers(0, 255, (48, 48), dtype=np.uint8))
    ctx = SimpleNamespace(artifacts={"extract.person_test": person_test}, log=logging.getLogger("test"))
    result = _judge_on_the_person(ctx, judge, FER, 32)
    assert result["images"] == 6 and 0 <= result["overall"] <= 1 and result["folder"] == str(person_test)
    assert result["per_class"]["angry"] is not None and result["per_class"]["sad"] is None
    assert _judge_on_the_person(SimpleNamespace(artifacts={}, log=ctx.log), judge, FER, 32) is None
    flat = tmp_path / "flat"
    flat.mkdir()
    write_png(flat / "a.png", np.zeros((48, 48), np.uint8))
    with caplog.at_level("WARNING"):
        assert _judge_on_the_person(SimpleNamespace(artifacts={"extract.person_test": flat}, log=ctx.log),
                                    judge, FER, 32) is None
    assert "the judge's accuracy on the person's own faces not computed" in caplog.text


def test_stage_says_why_there_is_no_person_score(tmp_path, smileys):
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces", 11), smileys, **PERSON_SCORE))
    (status,) = run_pipeline(config, "cyclegan")
    translation = status.manifest["summary"]["translation"]
    assert "person_score" not in translation
    assert "only 2 held-out person crop(s)" in translation["not_computed"] and "at least 5" in translation["not_computed"]
    saved = torch.load(tmp_path / "run" / "cyclegan" / "person_score.pt", weights_only=True)
    assert saved == {"not_computed": translation["not_computed"]}  # what classify reads to say why


# --- the time budget -------------------------------------------------------------------------


def test_budget_steps_spends_the_time_left_at_the_measured_speed():
    from fertransfer.cyclegan.train import budget_steps

    assert budget_steps(60.0, 10.0, 50, 0.5, 1000) == 50 + int(50 * 0.95 / 0.5)
    assert budget_steps(60.0, 10.0, 50, 0.01, 1000) == 1000  # steps stays the upper bound
    assert budget_steps(60.0, 70.0, 50, 0.5, 1000) == 50  # over budget already: stop where it is


def test_time_budget_is_resolved_once_recorded_and_kept_on_resume(tmp_path, monkeypatch):
    """The budget becomes a number of steps at the first checkpoint's step; the schedule is sized to
    it; an interrupted run resumes with the recorded number (not a new measurement) and ends exactly
    as an uninterrupted run, and as a plain run of that many steps."""
    from fertransfer.cyclegan import train as train_module

    domains = random_domains()
    resolved = iter([10, 10, 999])  # the third would be a re-measurement on resume: it must not happen
    monkeypatch.setattr(train_module, "budget_steps", lambda *args: next(resolved))
    cfg = tiny_config(steps=40, checkpoint_every=2, sample_every=5, time_budget_minutes=1.0)
    straight = train(cfg, domains, tmp_path / "straight")
    assert straight["steps"] == 10 and straight["time_budget"]["steps"] == 10
    assert straight["time_budget"]["resolved_at_step"] == 2 and straight["time_budget"]["upper_bound"] == 40
    first = train(cfg, domains, tmp_path / "split", stop_at=6)
    assert first["steps"] == 6
    second = train(cfg, domains, tmp_path / "split", resume=True)
    assert second["resumed_from_step"] == 6 and second["steps"] == 10 and second["time_budget"]["steps"] == 10
    plain = train(tiny_config(steps=10, checkpoint_every=2, sample_every=5), domains, tmp_path / "plain")
    assert plain["steps"] == 10
    final = lambda name: load_checkpoint(tmp_path / name / "checkpoints" / "step_00000010.pt")["models"]  # noqa: E731
    a, b, c = final("straight"), final("split"), final("plain")
    for net in ("G_AB", "G_BA", "D_A", "D_B"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
            assert torch.equal(a[net][key], c[net][key]), f"{net}.{key} differs from the plain 10-step run"


def test_a_changed_person_score_evaluates_the_finished_run_again(tmp_path, smileys):
    """Options only the final evaluation reads (the person score's, the judge) re-score the
    finished generator in a copy of its folder: nothing is trained again. Any other change trains."""
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline, stage_status

    path = write_config(tmp_path, face_folder(tmp_path / "faces", count=40), smileys, lambda_expression=0.0)
    (first,) = run_pipeline(load_config(path), "cyclegan")
    out = tmp_path / "run" / "cyclegan"
    trained = {name: (out / name).read_bytes() for name in ("checkpoints/latest.pt", "losses.csv", "swd.csv")}
    scorer = (out / "person_score.pt").read_bytes()
    assert first.manifest["summary"]["translation"]["person_score"]  # computed: there is something to redo

    path.write_text(path.read_text().replace("[cyclegan]\n", "[cyclegan]\nperson_score_blends = 0.0\n"))
    config = load_config(path)
    status = stage_status(config, "cyclegan")
    assert status.state == "stale" and "person_score_blends (only the final evaluation" in status.reason
    (second,) = run_pipeline(config, "cyclegan")
    summary, before = second.manifest["summary"], first.manifest["summary"]
    assert summary["evaluated_again"] == {"changed": {"person_score_blends": 0.0}, "run_timings": first.manifest["timings"]}
    assert {name: (out / name).read_bytes() for name in trained} == trained
    assert (out / "person_score.pt").read_bytes() != scorer  # trained without hybrids among its negatives
    assert {k: summary[k] for k in ("steps", "train_seconds", "swd")} == {k: before[k] for k in ("steps", "train_seconds", "swd")}
    assert summary["translation"]["images"] == before["translation"]["images"]
    assert before["translation"]["negatives"].endswith("50% of them hybrids of the person's crops")
    assert summary["translation"]["negatives"] == "FER val (PublicTest)"  # the manifest says which score
    assert stage_status(config, "cyclegan").state == "done"
    assert not (tmp_path / "run" / "cyclegan.partial").exists()

    # An option the training reads: trained again.
    path.write_text(path.read_text().replace("steps = 6", "steps = 3"))
    config = load_config(path)
    assert "only the final evaluation" not in stage_status(config, "cyclegan").reason
    (third,) = run_pipeline(config, "cyclegan")
    assert "evaluated_again" not in third.manifest["summary"] and third.manifest["summary"]["steps"] == 3
