"""What only a CUDA device exercises: placement, bf16 autocast, checkpoints moved between the GPU
and the CPU, and exact resume on the GPU. Marked `cuda`; skipped without a CUDA device
(bench/gpu_check.sh runs them, `pytest -m cuda`)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fertransfer.cyclegan.checkpoint import load_checkpoint
from fertransfer.cyclegan.data import Domains
from fertransfer.cyclegan.train import TrainConfig, train
from fertransfer.cyclegan.translate import Translator
from fertransfer.devices import use_bf16
from fertransfer.expression.cnn import CnnConfig, FaceNet, train_cnn
from fertransfer.expression.models import load_classifier, save_classifier

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

CLASSES = ["a", "b", "c"]


def tiny_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return (labels[:, None, None, None] * 80 + rng.integers(0, 60, (n, 48, 48, 1))).astype(np.uint8), labels


def tiny_domains(seed: int = 0) -> Domains:
    rng = np.random.default_rng(seed)
    return Domains(rng.integers(0, 255, (16, 18, 18, 3), dtype=np.uint8),
                   rng.integers(0, 255, (16, 18, 18, 1), dtype=np.uint8),
                   rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
                   rng.integers(0, 255, (4, 16, 16, 1), dtype=np.uint8), {})


def tiny_gan(**overrides) -> TrainConfig:
    values = dict(image_size=16, load_size=18, ngf=4, ndf=4, n_layers=2, steps=8, checkpoint_every=4,
                  sample_every=4, sample_images=2, threads=1, deterministic=True, device="cuda",
                  lambda_expression=0.0)
    return TrainConfig(**{**values, **overrides})


def test_cnn_trains_and_predicts_on_the_gpu():
    x, y = tiny_faces(48)
    result = train_cnn(x, y, x[:12], y[:12], CLASSES, CnnConfig(width=8, epochs=1, batch_size=16, tta="flip"),
                       device="cuda")
    model = result.classifier
    assert model.device.type == "cuda" and all(p.is_cuda for p in model.model.parameters())
    probs = model.predict_proba(x[:5])
    assert isinstance(probs, np.ndarray) and probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)


def test_bf16_autocast_on_the_gpu():
    device = torch.device("cuda")
    assert use_bf16("auto", device) == torch.cuda.is_bf16_supported()
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    net = FaceNet(3, 1, 8).to(device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = net(torch.randn(4, 1, 44, 44, device=device))
    assert logits.dtype == torch.bfloat16
    summary = train(tiny_gan(precision="bf16", steps=4, deterministic=False), tiny_domains(), _tmp("bf16"))
    assert summary["precision"] == "bf16"


def test_cnn_saved_on_the_gpu_loads_on_the_cpu(tmp_path):
    x, y = tiny_faces(48)
    config = CnnConfig(width=8, epochs=1, batch_size=16, tta="center", bf16="off")
    trained = train_cnn(x, y, x[:12], y[:12], CLASSES, config, device="cuda").classifier
    save_classifier(trained, tmp_path / "model")
    on_cpu = load_classifier(tmp_path / "model", device="cpu")
    assert on_cpu.device.type == "cpu"
    np.testing.assert_allclose(on_cpu.predict_proba(x[:8]), trained.predict_proba(x[:8]), atol=1e-4)
    back = load_classifier(tmp_path / "model", device="cuda")
    assert back.device.type == "cuda"


def test_cyclegan_checkpoints_cross_devices(tmp_path):
    train(tiny_gan(), tiny_domains(), tmp_path / "gpu")
    on_cpu = Translator.from_checkpoint(tmp_path / "gpu" / "checkpoints" / "latest.pt", direction="AtoB", device="cpu")
    images = tiny_domains().held_a
    assert on_cpu.translate(images).shape[:3] == images.shape[:3]
    train(tiny_gan(device="cpu"), tiny_domains(), tmp_path / "cpu")
    on_gpu = Translator.from_checkpoint(tmp_path / "cpu" / "checkpoints" / "latest.pt", direction="AtoB", device="cuda")
    assert on_gpu.translate(images).shape[:3] == images.shape[:3]
    # a GPU run resumes on the CPU
    resumed = train(tiny_gan(device="cpu", steps=12), tiny_domains(), tmp_path / "gpu", resume=True)
    assert resumed["resumed_from_step"] == 8


def test_cyclegan_resumes_exactly_on_the_gpu(tmp_path):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    straight = train(tiny_gan(), tiny_domains(), tmp_path / "straight")
    train(tiny_gan(), tiny_domains(), tmp_path / "split", stop_at=4)
    second = train(tiny_gan(), tiny_domains(), tmp_path / "split", resume=True)
    assert second["resumed_from_step"] == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000008.pt")["models"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "step_00000008.pt")["models"]
    for net in ("G_AB", "G_BA", "D_A", "D_B"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume on the GPU"
    assert straight["swd"] == second["swd"]


def test_cnn_resumes_on_the_gpu():
    x, y = tiny_faces(64)
    config = CnnConfig(width=4, epochs=2, batch_size=32, patience=0, tta="center", bf16="off")
    states: list[dict] = []
    full = train_cnn(x, y, x[:16], y[:16], CLASSES, config, device="cuda", checkpoint=states.append)
    resumed = train_cnn(x, y, x[:16], y[:16], CLASSES, config, device="cuda", resume=states[0])
    assert resumed.history[0] == full.history[0]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-4)


def _tmp(name: str):
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix=f"cuda_{name}_"))
