"""The cyclegan stage's other models: the shared-encoder autoencoder, CUT/FastCUT and the edit of the
person's own crops (reference).

Each trains on tiny data, saves, resumes exactly (bit-identical to an uninterrupted run),
translates through the Translator augment uses, and is an option of the stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fertransfer.cyclegan.autoencoder import build_networks, random_warp
from fertransfer.cyclegan.checkpoint import CheckpointError, load_checkpoint, load_newest_valid
from fertransfer.cyclegan.data import Domains
from fertransfer.cyclegan.models import MODELS
from fertransfer.cyclegan.reference import ReferenceGenerator, reference_bank
from fertransfer.cyclegan.train import train
from fertransfer.cyclegan.translate import Translator
from test_cyclegan import face_folder, random_domains, tiny_config, tiny_expression, write_config

NEW_MODELS = [m for m in MODELS if m != "cyclegan"]


def model_config(model: str, **overrides):
    values = dict(model=model, batch_size=2)
    if model in ("cut", "fastcut"):
        values |= dict(generator="resnet_6blocks_residual_resize", nce_patches=8)
    return tiny_config(**{**values, **overrides})


@pytest.mark.parametrize("model,lambda_expression", [("autoencoder", 0.0), ("autoencoder", 2.0), ("cut", 2.0),
                                                     ("fastcut", 0.0), ("reference", 2.0)])
def test_resume_continues_exactly(tmp_path, model, lambda_expression):
    """8 steps in one go == 4 steps, interruption, resume, 4 steps: every weight, the loss log, SWD."""
    domains = random_domains()
    cfg = model_config(model, lambda_expression=lambda_expression)
    expression = tiny_expression() if lambda_expression else None
    straight = train(cfg, domains, tmp_path / "straight", expression=expression)
    train(cfg, domains, tmp_path / "split", stop_at=4, expression=expression)
    second = train(cfg, domains, tmp_path / "split", resume=True, expression=expression)
    assert second["resumed_from_step"] == 4 and second["steps_this_run"] == 4
    a, b = (load_checkpoint(p / "checkpoints" / "step_00000008.pt") for p in (tmp_path / "straight", tmp_path / "split"))
    assert a["models"].keys() == b["models"].keys() and "G_BA" in a["models"]
    for net in a["models"]:
        for key in a["models"][net]:
            assert torch.equal(a["models"][net][key], b["models"][net][key]), f"{net}.{key} differs after resume"
    for name in a["optimizers"]:
        assert a["optimizers"][name]["state"].keys() == b["optimizers"][name]["state"].keys()
    lines = lambda p: [r.rsplit(",", 1)[0] for r in (p / "losses.csv").read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "straight") == lines(tmp_path / "split")
    assert straight["swd"] == second["swd"]
    rows = (tmp_path / "straight" / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert all(np.isfinite(float(v[k])) for v in values for k in header if v[k])
    if lambda_expression:
        assert min(float(v["expression"]) for v in values) > 0


@pytest.mark.parametrize("model", NEW_MODELS)
def test_translator_loads_each_model_and_translates_both_ways(tmp_path, model):
    train(model_config(model, steps=4), random_domains(), tmp_path)
    latest = tmp_path / "checkpoints" / "latest.pt"
    to_person = Translator.from_checkpoint(latest, direction="BtoA", device="cpu")
    fer = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 1), dtype=np.uint8)
    out = to_person.translate(fer, batch_size=2)
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.uint8 and to_person.step == 4
    assert np.array_equal(to_person.translate(fer, batch_size=64), out)
    assert out.std() > 0  # a picture, not a constant
    to_fer = Translator.from_checkpoint(latest, direction="AtoB", device="cpu")
    assert to_fer.translate(np.zeros((2, 20, 20, 3), np.uint8)).shape == (2, 16, 16, 1)


def test_autoencoder_shares_its_encoder_and_keeps_it_shared_after_loading(tmp_path):
    nets = build_networks(image_size=16, ngf=4, bottleneck=8, a_channels=3, b_channels=1)
    assert nets["G_AB"].encoder is nets["G_BA"].encoder and nets["G_AB"].decoder is not nets["G_BA"].decoder
    assert nets["G_BA"](torch.zeros(2, 1, 16, 16)).shape == (2, 3, 16, 16)
    assert nets["G_AB"](torch.zeros(2, 3, 16, 16)).shape == (2, 1, 16, 16)  # the encoder reads gray
    train(model_config("autoencoder", steps=4), random_domains(), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "step_00000004.pt")
    shared = [k for k in state["models"]["G_AB"] if k.startswith("encoder.")]
    assert shared and all(torch.equal(state["models"]["G_AB"][k], state["models"]["G_BA"][k]) for k in shared)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_networks(image_size=24, ngf=4, bottleneck=8, a_channels=3, b_channels=1)


def test_random_warp_is_small_seeded_and_off_at_zero():
    x = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(2, 1, 32, 32).contiguous()
    assert torch.equal(random_warp(x, 0.0), x)
    torch.manual_seed(0)
    warped = random_warp(x, 0.05)
    torch.manual_seed(0)
    assert torch.equal(random_warp(x, 0.05), warped)  # torch's RNG, which checkpoints keep
    change = (warped - x).abs().mean().item()
    assert 0.005 < change < 0.2


def blobs(count: int, channels: int, size: int, seed: int) -> np.ndarray:
    """Bright round blobs at random places: images that a code of two numbers describes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(4, size - 4, (count, 2))
    images = [255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) for cy, cx in centres]
    return np.stack([np.repeat(im[..., None], channels, 2) for im in images]).astype(np.uint8)


def test_the_autoencoder_learns_to_reconstruct(tmp_path):
    """A plain autoencoder (no discriminator, no warps) on blobs: the reconstruction loss halves."""
    domains = Domains(blobs(24, 3, 18, 0), blobs(24, 1, 18, 1), blobs(8, 3, 16, 2), blobs(8, 1, 16, 3), {})
    cfg = model_config("autoencoder", steps=60, batch_size=4, ngf=8, bottleneck=8, lambda_adversarial=0.0, warp=0.0,
                       lr=2e-3, beta1=0.9, checkpoint_every=60, sample_every=60)
    train(cfg, domains, tmp_path)
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    rec = [float(dict(zip(header, r.split(",")))["rec_A"]) for r in rows[1:]]
    assert np.mean(rec[-10:]) < 0.75 * np.mean(rec[:10])
    assert set(load_checkpoint(tmp_path / "checkpoints" / "step_00000060.pt")["optimizers"]) == {"G"}  # no D


def test_a_checkpoint_of_another_model_names_the_mismatch(tmp_path):
    train(tiny_config(steps=4), random_domains(), tmp_path)
    with pytest.raises(CheckpointError, match="model: checkpoint 'cyclegan', config 'autoencoder'"):
        load_newest_valid(tmp_path / "checkpoints", model_config("autoencoder").architecture())
    # A checkpoint written before `model` existed was a CycleGAN's.
    state = load_checkpoint(tmp_path / "checkpoints" / "step_00000004.pt")
    del state["config"]["model"], state["config"]["bottleneck"]
    from fertransfer.cyclegan.checkpoint import check_architecture

    check_architecture(state, tiny_config().architecture(), "old.pt")


# --- the stage ---------------------------------------------------------------------------------


def test_stage_trains_the_autoencoder_and_augment_can_load_it(tmp_path, smileys):
    from fertransfer.pipelines.config import load_config
    from fertransfer.pipelines.runner import run_pipeline

    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, model="autoencoder",
                                      bottleneck=8, batch_size=2, fer_classes=["happy", "sad"]))
    (status,) = run_pipeline(config, "cyclegan")
    out = tmp_path / "run" / "cyclegan"
    assert status.manifest["summary"]["steps"] == 6
    header = (out / "losses.csv").read_text().splitlines()[0]
    assert header.startswith("step,lr,G,rec_A,rec_B,G_BA,expression")
    assert (out / "loss_curve.png").exists() and (out / "samples" / "final.png").exists()
    assert Translator.from_checkpoint(out / "checkpoints" / "latest.pt", "BtoA", "cpu").out_channels == 3


@pytest.mark.parametrize("options,message", [
    ({"model": "stylegan"}, r"model: 'stylegan' is not one of cyclegan, autoencoder, cut, fastcut"),
    ({"model": "autoencoder", "image_size": 24}, "needs an image_size that is a multiple of 16"),
    ({"model": "cut", "generator": "unet"}, "reads PatchNCE features from a ResNet generator"),
    ({"generator": "resnet_99blocks"}, r"generator: 'resnet_99blocks' is not one of resnet_6blocks"),
    ({"diffaugment": ["color", "rotation"]}, "diffaugment: unknown 'rotation'; known: color, translation, cutout"),
])
def test_unknown_or_unfit_models_are_config_errors_before_any_stage_runs(tmp_path, smileys, options, message):
    from fertransfer.pipelines.config import ConfigError, load_config
    from fertransfer.pipelines.runner import run_pipeline

    with pytest.raises(ConfigError, match=message):
        run_pipeline(load_config(write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, **options)), "cyclegan")
    assert not (tmp_path / "run").exists()


def test_stage_names_every_model():
    from fertransfer.cyclegan import models, stage

    assert stage.MODELS == models.MODELS


@pytest.mark.parametrize("model", NEW_MODELS)
def test_each_model_trains_under_bf16_autocast(tmp_path, model):
    """precision = "bf16" (the CPU default where bf16 is native): every loss stays finite."""
    summary = train(model_config(model, steps=2, checkpoint_every=2, sample_every=2, precision="bf16",
                                 lambda_expression=1.0), random_domains(), tmp_path, expression=tiny_expression())
    assert summary["precision"] == "bf16"
    rows = (tmp_path / "losses.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(np.isfinite(float(v)) for r in rows for v in r.split(",")[2:] if v)


# --- reference: the person's own crops, edited -------------------------------------------------


def test_reference_bank_is_a_seeded_choice_of_centre_crops():
    person = np.arange(10 * 18 * 18 * 3, dtype=np.int64).reshape(10, 18, 18, 3).astype(np.uint8)
    bank = reference_bank(person, 16, keep=4, seed=0)
    assert bank.shape == (4, 16, 16, 3) and np.array_equal(bank, reference_bank(person, 16, keep=4, seed=0))
    chosen = [next(i for i in range(10) if np.array_equal(person[i, 1:17, 1:17], crop)) for crop in bank]
    assert chosen == sorted(chosen)  # centre crops, in their order
    assert len(reference_bank(person, 16, keep=0, seed=0)) == 10 and len(reference_bank(person, 16, 40, 0)) == 10


def test_untrained_reference_generator_returns_the_person_crop_nearest_in_layout():
    """Before any step the change is zero: F(b) is the bank's crop whose gray layout is nearest b's,
    whatever b's brightness and contrast."""
    size = 16
    yy, xx = np.mgrid[:size, :size]
    left, right, top = (xx < 8), (xx >= 8), (yy < 8)
    bank = np.stack([np.repeat(np.where(m, 220, 30)[..., None], 3, 2) for m in (left, right, top)]).astype(np.uint8)
    generator = ReferenceGenerator(1, 3, ngf=4, image_size=size, bank=bank).eval()
    fer = np.stack([np.where(m, hi, lo) for m, hi, lo in ((right, 140, 100), (top, 250, 0), (left, 90, 60))])
    x = torch.from_numpy(fer[:, None].astype(np.float32) / 127.5 - 1)
    assert generator.nearest(x).tolist() == [1, 2, 0]
    with torch.no_grad():
        out = generator(x)
    assert torch.allclose(out, torch.from_numpy(bank[[1, 2, 0]]).permute(0, 3, 1, 2).float() / 127.5 - 1, atol=2e-3)


def test_reference_detail_puts_the_fer_faces_fine_lines_on_the_persons_crop(tmp_path):
    """reference_detail = 1: untrained, F(b) is the nearest crop's blur plus b's fine detail (a
    hybrid image); a flat crop takes b's lines exactly, a share of 0.5 half of them; the setting
    reaches the Translator through the checkpoint's config."""
    from fertransfer.cyclegan.tensors import fine_detail

    size = 16
    bank = np.full((1, size, size, 1), 128, np.uint8)  # a flat crop: no detail of its own
    fer = np.zeros((1, 1, size, size), np.float32)
    fer[..., 6:10, 3:13] = 0.8  # a mouth-like bar
    x = torch.from_numpy(fer)
    crop = torch.full((1, 1, size, size), 128 / 127.5 - 1)
    with torch.no_grad():
        full = ReferenceGenerator(1, 1, ngf=4, image_size=size, bank=bank, detail=1.0, detail_sigma=1.0).eval()(x)
        half = ReferenceGenerator(1, 1, ngf=4, image_size=size, bank=bank, detail=0.5, detail_sigma=1.0).eval()(x)
    lines = fine_detail(x, 1.0)
    assert lines.abs().max() > 0.3  # the bar's edges are detail
    assert torch.allclose(full, crop + lines, atol=2e-3) and torch.allclose(half, crop + 0.5 * lines, atol=2e-3)
    domains = random_domains()
    train(model_config("reference", steps=2, reference_bank=3, reference_detail=0.5), domains, tmp_path)
    translator = Translator.from_checkpoint(tmp_path / "checkpoints" / "latest.pt", "BtoA", "cpu")
    assert translator.generator.detail == 0.5 and translator.generator.detail_sigma == 2.0


def test_reference_generator_saves_its_bank_and_translator_loads_it(tmp_path):
    domains = random_domains()
    train(model_config("reference", steps=4, reference_bank=5), domains, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    assert state["models"]["G_BA"]["bank"].shape == (5, 3, 16, 16)
    translator = Translator.from_checkpoint(tmp_path / "checkpoints" / "latest.pt", "BtoA", "cpu")
    assert torch.equal(translator.generator.bank, state["models"]["G_BA"]["bank"])
    crops = {c.tobytes() for c in reference_bank(domains.train_a, 16, 5, 0)}
    saved = state["models"]["G_BA"]["bank"].permute(0, 2, 3, 1).numpy()
    assert {c.tobytes() for c in saved} == crops  # the person's own training crops
    # A checkpoint saved while the crops' layouts were saved with them (before they were derived
    # on load) still loads, and gives the same translations.
    legacy = tmp_path / "legacy.pt"
    state["models"]["G_BA"]["bank_layout"] = translator.generator.bank_layout.clone()
    torch.save(state, legacy)
    x = torch.from_numpy(domains.held_b[:3]).permute(0, 3, 1, 2).float() / 127.5 - 1
    old = Translator.from_checkpoint(legacy, "BtoA", "cpu")
    assert torch.equal(old.generator(x), translator.generator(x))
