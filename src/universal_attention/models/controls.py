"""Attention controls: maps that replace a model's learned attention, to say what knowing *where* is worth.

- ``learned``: the model's own maps (no control).
- ``uniform``: every location weighted the same, i.e. plain average pooling per tap: the null.
- ``oracle``: the ground-truth object mask, averaged down to each tap's grid: what perfect *where* is worth.
- ``shuffled``: another image's learned map (image i of a batch gets image i - 1's; a lone image gets its own
  map turned by 180 degrees): the maps keep their statistics but lose their image-specific place.

Maps follow the block's normalisation: softmax maps sum to one over space, sigmoid maps are gates in 0..1
(uniform gates are all ones, the oracle gate is the share of each cell covered by the object).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import CONTROLS
from ..errors import ConfigError, ModelError

NEEDS_MASKS = ("oracle",)


def check_controls(controls: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a name that is not a control."""
    unknown = [name for name in controls if name not in CONTROLS]
    if unknown:
        raise ConfigError(f"unknown attention control(s) {', '.join(unknown)}; choose from {', '.join(CONTROLS)}")


def uniform_map(like: Tensor, normalisation: str) -> Tensor:
    """``[B, 1, h, w]`` uniform attention for features ``like`` ``[B, C, h, w]``."""
    batch, _, height, width = like.shape
    value = 1.0 / (height * width) if normalisation == "softmax" else 1.0
    return torch.full((batch, 1, height, width), value, device=like.device, dtype=torch.float32)


def oracle_map(masks: Tensor, like: Tensor, normalisation: str) -> Tensor:
    """The object masks ``[B, H, W]`` as attention on the grid of ``like`` ``[B, C, h, w]``.

    Each cell gets the share of its pixels on the object; softmax maps are then scaled to sum to one (an
    image without object pixels gets uniform attention).
    """
    if masks.shape[0] != like.shape[0]:
        raise ModelError(f"oracle attention needs one mask per image (got {masks.shape[0]} for {like.shape[0]})")
    cover = F.adaptive_avg_pool2d((masks > 0).float()[:, None].to(like.device), (like.shape[-2], like.shape[-1]))
    if normalisation != "softmax":
        return cover
    total = cover.sum(dim=(2, 3), keepdim=True)
    return torch.where(total > 0, cover / total.clamp_min(1e-12), uniform_map(like, normalisation))


def shuffled_map(attention: Tensor) -> Tensor:
    """Image i gets image i - 1's map (the first gets the last's); a batch of one gets its own map rotated."""
    if attention.shape[0] == 1:
        return attention.flip(-1, -2)
    return attention.roll(1, dims=0)
