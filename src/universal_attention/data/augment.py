"""Batched training augmentation on uint8 tensors: random resized crop and horizontal flip.

Crop boxes for the whole batch are drawn in a few tensor ops; each crop is then resized with one uint8
``F.interpolate`` call. On 2 CPU cores this measured about 3x faster than one batched float
``F.grid_sample`` over per-sample affine grids (~6500 vs ~2100 img/s at batch 64, 128 px), because it
never converts the batch to float. The per-crop calls run on one thread: each is too small to gain from
a second one, and with another process busy on the other core, two threads fell to ~800 img/s from the
~6000 img/s that one thread keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

SCALE = (0.5, 1.0)
"""Range of the crop's area as a fraction of the image's area."""
RATIO = (3 / 4, 4 / 3)
"""Range of the crop's aspect ratio (width / height), drawn log-uniformly."""


def augment_batch(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random-resized-crop and horizontally flip every image of a batch.

    Each image gets its own crop (area fraction uniform in :data:`SCALE`, aspect ratio log-uniform in
    :data:`RATIO`, clipped to the image, position uniform) resized back to the input size with bilinear
    interpolation, then is flipped left-right with probability 1/2. The result depends only on
    ``images`` and the state of ``generator``.

    Args:
        images: uint8 [B, 3, H, W].
        generator: the source of randomness (CPU); advanced by the call.

    Returns:
        uint8 [B, 3, H, W].
    """
    batch, _, height, width = images.shape
    area = torch.empty(batch).uniform_(*SCALE, generator=generator) * (height * width)
    ratio = torch.empty(batch).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator).exp()
    crop_w = (area * ratio).sqrt().round().clamp(1, width).long()
    crop_h = (area / ratio).sqrt().round().clamp(1, height).long()
    left = (torch.rand(batch, generator=generator) * (width - crop_w + 1)).long()
    top = (torch.rand(batch, generator=generator) * (height - crop_h + 1)).long()
    flip = torch.rand(batch, generator=generator) < 0.5

    out = torch.empty_like(images)
    with _one_thread():
        for i, (x, y, w, h) in enumerate(zip(left.tolist(), top.tolist(), crop_w.tolist(), crop_h.tolist())):
            crop = images[i : i + 1, :, y : y + h, x : x + w]
            out[i] = F.interpolate(crop, size=(height, width), mode="bilinear", antialias=True)[0]
    out[flip] = out[flip].flip(-1)
    return out


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread inside the block; restore the previous count after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
