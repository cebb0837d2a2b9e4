"""The R1 penalty on the discriminators: its value on a known discriminator, and training with it
changes the discriminators and resumes exactly, for each model with one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fertransfer.cyclegan.losses import r1_penalty
from test_cyclegan import trained_with_and_without


def test_r1_is_half_the_weight_times_the_squared_gradient_norm():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        linear[1].weight.copy_(torch.arange(12.0).reshape(1, 12))
    real = torch.rand(3, 1, 3, 4)
    penalty = r1_penalty(linear, real, weight=4.0)
    assert penalty.item() == pytest.approx(0.5 * 4.0 * float((torch.arange(12.0) ** 2).sum()))
    penalty.backward()  # a gradient of a gradient reaches the discriminator's weights: d/dw 2|w|^2 = 4w
    assert torch.allclose(linear[1].weight.grad, 4.0 * torch.arange(12.0).reshape(1, 12))
    assert r1_penalty(linear, real, weight=0.0).item() == 0.0


@pytest.mark.parametrize("model", ["cyclegan", "cut", "autoencoder"])
def test_training_with_r1_changes_the_discriminator_and_resumes_exactly(tmp_path, model):
    a, b, plain = trained_with_and_without(tmp_path, model, lambda_r1=10.0)
    assert all(torch.equal(a[net][k], b[net][k]) for net in a for k in a[net])
    assert not all(torch.equal(a["D_A"][k], plain["D_A"][k]) for k in a["D_A"])
