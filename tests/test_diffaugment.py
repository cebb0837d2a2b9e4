"""DiffAugment for the discriminators: each transform on known inputs, differentiable, seeded;
the discriminator applies it to everything it scores; training with it resumes exactly."""

from __future__ import annotations

import pytest
import torch

from fertransfer.cyclegan import diffaugment
from fertransfer.cyclegan.diffaugment import AUGMENTATIONS, cutout, diff_augment, translation
from fertransfer.cyclegan.models import build_discriminator
from test_cyclegan import trained_with_and_without


def test_translation_moves_whole_pixels_and_fills_with_zeros():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1) + 1  # no zeros of its own
    moved = translation(x, ratio=0.25)  # shifts of -1, 0 or 1 pixel each way
    for image in moved:
        kept = image[image != 0]
        assert set(kept.tolist()) <= set(range(1, 17)) and len(kept) in (9, 12, 16)
    assert any(torch.equal(m, x[0]) for m in moved) and not all(torch.equal(m, x[0]) for m in moved)
    down = moved[(moved[:, 0, 0, :] == 0).all(dim=1) & (moved[:, 0, 1:, :] != 0).flatten(1).all(dim=1)]
    assert len(down) and torch.equal(down[0, 0, 1:], x[0, 0, :3])  # moved down one row, top row zeros


def test_cutout_zeroes_one_square_at_most_half_the_size():
    torch.manual_seed(0)
    holes = (cutout(torch.ones(200, 3, 8, 8)) == 0).all(dim=1)  # every channel alike
    counts = holes.flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() > 0  # 4x4 inside the image, less at its edges
    rows, cols = holes.any(dim=2), holes.any(dim=1)
    assert torch.equal(holes, rows.unsqueeze(2) & cols.unsqueeze(1))  # a rectangle, nothing else


def test_the_policy_is_seeded_differentiable_and_empty_is_the_identity():
    x = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_()
    torch.manual_seed(1)
    a = diff_augment(x, AUGMENTATIONS)
    torch.manual_seed(1)
    assert torch.equal(a, diff_augment(x, AUGMENTATIONS)) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert diff_augment(x, ()) is x
    gray = diffaugment.color(torch.zeros(2, 1, 4, 4))
    assert gray.shape == (2, 1, 4, 4) and gray.abs().sum() > 0  # brightness moved it


def test_the_discriminator_augments_what_it_scores():
    plain, augmented = build_discriminator(1, 4, 2), build_discriminator(1, 4, 2, ("translation", "cutout"))
    augmented.load_state_dict(plain.state_dict())  # the same weights, the same checkpoint keys
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(plain(x), plain(x)) and not torch.equal(augmented(x), augmented(x))


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_training_with_diffaugment_changes_it_and_resumes_exactly(tmp_path, model):
    a, b, plain = trained_with_and_without(tmp_path, model, diffaugment=AUGMENTATIONS)
    assert all(torch.equal(a[net][k], b[net][k]) for net in a for k in a[net])
    assert not all(torch.equal(a["D_A"][k], plain["D_A"][k]) for k in a["D_A"])


def test_stage_names_every_augmentation():
    from fertransfer.cyclegan import stage

    assert stage.AUGMENTATIONS == diffaugment.AUGMENTATIONS
