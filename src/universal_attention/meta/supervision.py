"""Attention told where: an auxiliary loss that pulls every tap's map toward the object mask (the positive control).

``train.attention_supervision`` (a weight, 0 = off) adds, on batches that carry object masks, the mean over taps
of the cross-entropy between the mask, averaged down to the tap's grid and scaled to sum to one, and the tap's
softmax map (its KL divergence from the mask up to a constant); sigmoid gates are pulled toward the mask's cover
of each cell by binary cross-entropy. It shows what the mechanism can do at a budget when it is told where, so
that a negative answer of the unsupervised runs can be read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .reptile import Task

LossFn = Callable[[nn.Module, tuple[Tensor, ...], Task], Tensor]


def mask_targets(masks: Tensor, like: Tensor) -> Tensor:
    """Object masks ``[B, H, W]`` as the share of each cell of ``like``'s grid (``[B, 1, h, w]``) on the object."""
    return F.adaptive_avg_pool2d((masks > 0).float()[:, None].to(like.device), (like.shape[-2], like.shape[-1]))


def attention_supervision_loss(attention: dict[str, Tensor], masks: Tensor, normalisation: str = "softmax") -> Tensor:
    """Mean over taps of the map's cross-entropy against the mask (images without object pixels are left out)."""
    losses = []
    for amap in attention.values():
        cover = mask_targets(masks, amap)
        present = cover.flatten(1).sum(1) > 0
        if not present.any():
            continue
        if normalisation == "softmax":
            target = cover.flatten(1)[present]
            target = target / target.sum(1, keepdim=True)
            log_map = amap.flatten(1)[present].float().clamp_min(1e-12).log()
            losses.append(-(target * log_map).sum(1).mean())
        else:
            gates = amap.flatten(1)[present].float().clamp(1e-6, 1 - 1e-6)
            losses.append(F.binary_cross_entropy(gates, cover.flatten(1)[present]))
    if not losses:
        return next(iter(attention.values())).new_zeros(())
    return torch.stack(losses).mean()


def supervised_loss(weight: float, normalisation: str = "softmax") -> LossFn:
    """A Reptile ``loss_fn``: the task head's cross-entropy plus ``weight`` times
    :func:`attention_supervision_loss` on batches ``(images, labels, masks)``; batches without masks get the
    cross-entropy alone."""

    def loss(model: nn.Module, batch: tuple[Tensor, ...], task: Task) -> Tensor:
        out = model(batch[0], task.name)
        classification = F.cross_entropy(out.logits, batch[1])
        if len(batch) < 3 or weight == 0 or not out.attention:
            return classification
        return classification + weight * attention_supervision_loss(out.attention, batch[2], normalisation)

    return loss
