"""Batched random-resized-crop + horizontal-flip augmentation on uint8 tensors."""

from __future__ import annotations

import torch

from universal_attention.data import augment
from universal_attention.data.augment import augment_batch


def random_batch(batch: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_shape_and_dtype_are_kept():
    images = random_batch(5, 24)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_same_generator_state_gives_the_same_batch():
    images = random_batch()
    first = augment_batch(images, torch.Generator().manual_seed(3))
    second = augment_batch(images, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_another_seed_gives_another_batch_and_the_input_is_untouched():
    images = random_batch()
    copy = images.clone()
    first = augment_batch(images, torch.Generator().manual_seed(3))
    second = augment_batch(images, torch.Generator().manual_seed(4))
    assert not torch.equal(first, second)
    assert not torch.equal(first, images)
    assert torch.equal(images, copy)


def test_full_crops_are_either_the_image_or_its_mirror(monkeypatch):
    monkeypatch.setattr(augment, "SCALE", (1.0, 1.0))
    monkeypatch.setattr(augment, "RATIO", (1.0, 1.0))
    images = random_batch(64, 16)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 16 < int(mirrored.sum()) < 48


def test_crops_zoom_in_on_part_of_the_image():
    # one bright pixel column on the left edge: a crop that drops it, or stretches it, changes the column sum
    images = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    images[..., 0] = 255
    out = augment_batch(images, torch.Generator().manual_seed(0))
    bright = (out[:, 0] > 127).flatten(1).sum(1)
    assert bool((bright != 32).any())
