"""Attention-map maths: maps from a forward pass, upsampled to the image, normalised and combined over taps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from ..models.attention_resnet import AttentionOutput

COMBINED = "combined"


def has_attention(model: nn.Module) -> bool:
    """Whether ``model`` makes attention maps (``False`` for a config with ``attention: false``)."""
    return bool(getattr(getattr(model, "config", None), "attention", True))


def require_attention(model: nn.Module) -> None:
    """Raise :class:`ModelError` when ``model`` has no attention maps to look at."""
    if not has_attention(model):
        raise ModelError("the model has no attention maps (its config has attention: false)")


@torch.no_grad()
def eval_forward(
    model: nn.Module, images: Tensor, task: str | None, control: str = "learned", masks: Tensor | None = None
) -> AttentionOutput:
    """One forward pass in eval mode without gradients; the model's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        if control == "learned":
            return model(images, task)
        return model(images, task, control=control, masks=masks)
    finally:
        model.train(was_training)


def upsample_maps(
    attention: dict[str, Tensor], size: Sequence[int], softmax: bool, layers: Sequence[str] | None
) -> dict[str, Tensor]:
    """Tap maps upsampled (bilinear) to ``size`` on CPU, softmax maps renormalised to sum to one, in the order of
    ``layers`` (default: every tap), ``"combined"`` among them if asked.

    Raises:
        ModelError: a name in ``layers`` is neither a tap nor ``"combined"``.
    """
    wanted = list(attention) if layers is None else list(dict.fromkeys(layers))
    allowed = [*attention, COMBINED]
    unknown = [name for name in wanted if name not in allowed]
    if unknown:
        raise ModelError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    maps = {}
    for name, amap in attention.items():
        upsampled = F.interpolate(amap.float(), size=tuple(size), mode="bilinear", align_corners=False)
        if softmax:
            upsampled = upsampled / upsampled.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        maps[name] = upsampled.cpu()
    if COMBINED in wanted:
        maps[COMBINED] = combined_map(maps)
    return {name: maps[name] for name in wanted}


def attention_maps(
    model: nn.Module,
    images: Tensor,
    task: str | None = None,
    *,
    layers: Sequence[str] | None = None,
    control: str = "learned",
    masks: Tensor | None = None,
) -> dict[str, Tensor]:
    """Attention of every tap layer, upsampled (bilinear) to the image size: ``{tap: [B, 1, H, W]}``.

    Softmax maps are renormalised to sum to one over ``H, W``; sigmoid maps keep their 0..1 values. A model
    without attention (``attention: false``) gives ``{}``.

    Args:
        model: an :class:`AttentionResNet50` (or a module with the same ``forward`` and ``config``).
        images: ``[B, 3, H, W]`` uint8 or 0..1 float images, on the model's device.
        task: a head to run (attention does not depend on it); ignored when the model has no such head.
        layers: tap names to return, in this order, optionally with ``"combined"`` (default: every tap).
        control: an attention control in place of the learned maps (see
            :mod:`universal_attention.models.controls`); ``oracle`` needs ``masks`` ``[B, H, W]``.

    Raises:
        ModelError: a name in ``layers`` is not a tap of the model.
    """
    has_head = getattr(model, "has_head", lambda name: False)
    output = eval_forward(model, images, task if task is None or has_head(task) else None, control, masks)
    softmax = getattr(getattr(model, "config", None), "normalisation", "softmax") == "softmax"
    return upsample_maps(output.attention, images.shape[-2:], softmax, layers)


def normalised(maps: Tensor) -> Tensor:
    """``[B, 1, H, W]`` maps as ``[B, H * W]`` float64 rows, each scaled to sum to one."""
    flat = maps.flatten(1).double()
    return flat / flat.sum(1, keepdim=True).clamp_min(1e-12)


def combined_map(maps: dict[str, Tensor]) -> Tensor:
    """The mean of same-sized ``[B, 1, H, W]`` maps, each scaled to sum to one first (sums to one)."""
    scaled = [amap / amap.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12) for amap in maps.values()]
    return torch.stack(scaled).mean(0)
