"""`hybrid_fakes`: the person's discriminator is also shown hybrids (a person crop's blur plus the
FER source's fine lines) as fakes; the hybrids are what they say, and training with them changes
the discriminator and resumes exactly, for each model with a person's discriminator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fertransfer.cyclegan.parts import HYBRID_SIGMAS, with_hybrids
from fertransfer.cyclegan.tensors import fine_detail, hybrids
from test_cyclegan import tiny_config, trained_with_and_without


def test_a_hybrid_has_the_persons_blur_and_the_sources_lines():
    torch.manual_seed(0)
    person, source = torch.rand(2, 3, 16, 16) * 0.8 - 0.4, torch.rand(2, 1, 16, 16) * 0.8 - 0.4
    mixed = hybrids(person, source, sigma=1.0)
    # The person's blur (all but its lines finer than 1 px) plus the gray source's lines, in each channel.
    lines = fine_detail(source, 1.0).expand(-1, 3, -1, -1)
    assert torch.allclose(mixed, person - fine_detail(person, 1.0) + lines, atol=1e-6)
    assert not torch.allclose(mixed, person, atol=0.05) and not torch.allclose(mixed, source.expand(-1, 3, -1, -1), atol=0.05)
    assert torch.allclose(hybrids(person, person, 2.0), person, atol=1e-6)  # a face with itself: the face
    assert hybrids(torch.ones(1, 1, 8, 8), -torch.ones(1, 1, 8, 8), 1.0).abs().max() <= 1  # still an image


def test_the_discriminators_fakes_with_and_without_hybrids():
    fake, real_A, real_B = torch.zeros(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    rng = np.random.default_rng(0)
    assert with_hybrids(tiny_config(), fake, real_A, real_B, rng) is fake
    shown = with_hybrids(tiny_config(hybrid_fakes=True), fake, real_A, real_B, rng)
    assert shown.shape == (4, 3, 8, 8) and torch.equal(shown[:2], fake)
    assert any(torch.allclose(shown[2:], hybrids(real_A, real_B, sigma)) for sigma in HYBRID_SIGMAS)


@pytest.mark.parametrize("model", ["cyclegan", "cut", "reference"])
def test_training_with_hybrid_fakes_changes_the_discriminator_and_resumes_exactly(tmp_path, model):
    a, b, plain = trained_with_and_without(tmp_path, model, hybrid_fakes=True)
    assert all(torch.equal(a[net][k], b[net][k]) for net in a for k in a[net])
    assert not all(torch.equal(a["D_A"][k], plain["D_A"][k]) for k in a["D_A"])
