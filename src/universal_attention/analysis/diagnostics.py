"""Attention diagnostics: whether the mechanism can learn, per tap, from one forward pass and the last backward.

- ``entropy``: the map's entropy over the entropy of the uniform map (1 = uniform, 0 = one location), mean over
  images;
- ``score_spread``: the standard deviation of the compatibility scores over locations (before the softmax or
  sigmoid), mean over images: near 0, every location scores the same and the map cannot move;
- ``saturated``: the share of the additive compatibility's ``tanh`` inputs beyond ``|2|`` (where ``tanh`` is flat and
  passes less than 7 % of its gradient); ``None`` for compatibilities without ``tanh``;
- ``gradient_norm``: the L2 norm of the gradient that the last backward pass left on the tap's attention block
  (:func:`attention_gradient_norms`): near 0, training does not reach the attention.

:func:`source_checks` adds what the maps are for, on held-out images with object masks: top-1 of the image's task
head and the attention mass on the object relative to the object's share of the image (``relative_to_area``: 1 is
what uniform attention gives, 2 is twice as much on the object).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..data.samples import ImageDataset, dataset_labels, fixed_subset, read_samples
from ..models.attention_resnet import AttentionResNet50
from .evaluate import mass_in_masks
from .maps import upsample_maps

EVAL_BATCH = 64


@dataclass
class TapDiagnostics:
    """One tap's diagnostics (see the module's docstring)."""

    entropy: float
    score_spread: float
    saturated: float | None


def relative_entropy(maps: Tensor) -> Tensor:
    """Per image, the entropy of ``maps`` ``[B, 1, h, w]`` (scaled to sum to 1) over that of the uniform map."""
    flat = maps.flatten(1).double().clamp_min(0)
    flat = flat / flat.sum(1, keepdim=True).clamp_min(1e-12)
    entropy = -(flat * flat.clamp_min(1e-12).log()).sum(1)
    locations = flat.shape[1]
    return (entropy / math.log(locations)).float() if locations > 1 else torch.ones(len(flat))


@torch.no_grad()
def attention_diagnostics(model: AttentionResNet50, images: Tensor) -> dict[str, TapDiagnostics]:
    """Entropy relative to uniform, score spread and saturated share of every tap, on ``images`` (eval mode; the
    model's mode is restored). A model without attention has none."""
    if not model.config.attention:
        return {}
    was_training = model.training
    model.eval()
    try:
        sums: dict[str, list[float]] = {}
        for start in range(0, len(images), EVAL_BATCH):
            batch = images[start : start + EVAL_BATCH].to(next(model.parameters()).device)
            taps, query = model.tap_features(batch)
            for tap, features in taps.items():
                block = model.attention_block(tap)
                scores = block.score(features, query).float().flatten(1)
                saturated = block.saturated_share(features, query)
                values = [
                    float(relative_entropy(block.attend(features, query)).sum()),
                    float(scores.std(dim=1, unbiased=False).sum()),
                    math.nan if saturated is None else float(saturated) * len(batch),
                ]
                sums[tap] = [a + b for a, b in zip(sums.get(tap, [0.0] * 3), values)]
    finally:
        model.train(was_training)
    count = len(images)
    return {
        tap: TapDiagnostics(
            entropy=entropy / count,
            score_spread=spread / count,
            saturated=None if math.isnan(saturated) else saturated / count,
        )
        for tap, (entropy, spread, saturated) in sums.items()
    }


def attention_gradient_norms(model: AttentionResNet50) -> dict[str, float]:
    """The L2 norm of the gradient left on each tap's attention block by the last backward pass (0 where none)."""
    if not model.config.attention:
        return {}
    norms = {}
    for tap in model.taps:
        squares = [
            p.grad.detach().double().pow(2).sum() for p in model.attention_block(tap).parameters() if p.grad is not None
        ]
        norms[tap] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return norms


class HeldOut(NamedTuple):
    """A fixed set of held-out images of one source, with labels and object masks."""

    images: Tensor
    labels: Tensor
    masks: Tensor


def read_held_out(dataset: ImageDataset, count: int) -> HeldOut:
    """The fixed subset (seed 0) of ``count`` images of ``dataset`` (built with masks), read once."""
    indices = fixed_subset(len(dataset), count)
    images, masks = read_samples(dataset, indices, with_masks=True)
    assert masks is not None  # read_samples returns masks when asked
    return HeldOut(images, dataset_labels(dataset)[indices], masks)


@dataclass
class SourceCheck:
    """One source's held-out check: top-1 of its head, and per tap ``relative_to_area`` and ``entropy``."""

    top1: float
    relative_to_area: dict[str, float]
    entropy: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """``{"top1": .., "attention": {"relative_to_area": {tap: ..}, "entropy": {tap: ..}}}``."""
        return {"top1": self.top1, "attention": {"relative_to_area": self.relative_to_area, "entropy": self.entropy}}


@torch.no_grad()
def source_check(model: AttentionResNet50, held_out: HeldOut, task: str) -> SourceCheck:
    """Top-1 of ``task``'s head and, per tap, attention on the object relative to its area, and map entropy,
    on ``held_out`` images with object masks (eval mode; the model's mode is restored)."""
    images, labels, masks = held_out
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        hits = 0.0
        mass: dict[str, float] = {}
        entropy: dict[str, float] = {}
        for start in range(0, len(images), EVAL_BATCH):
            batch = images[start : start + EVAL_BATCH].to(device)
            out = model(batch, task)
            hits += float((out.logits.argmax(1).cpu() == labels[start : start + EVAL_BATCH]).sum())
            maps = upsample_maps(out.attention, batch.shape[-2:], model.config.normalisation == "softmax", None)
            for tap, amap in maps.items():
                share, _ = mass_in_masks(amap.cpu(), masks[start : start + EVAL_BATCH])
                mass[tap] = mass.get(tap, 0.0) + float(share.double().sum())
                entropy[tap] = entropy.get(tap, 0.0) + float(relative_entropy(out.attention[tap]).sum())
    finally:
        model.train(was_training)
    area = float((masks > 0).flatten(1).double().mean(1).mean())
    count = len(images)
    return SourceCheck(
        top1=hits / count,
        relative_to_area={tap: value / count / area for tap, value in mass.items()},
        entropy={tap: value / count for tap, value in entropy.items()},
    )


def diagnostics_scalars(diagnostics: Mapping[str, TapDiagnostics], gradients: Mapping[str, float]) -> dict[str, float]:
    """Log tags and values: ``attention/<measure>/<tap>``."""
    scalars = {}
    for tap, values in diagnostics.items():
        for measure, value in asdict(values).items():
            if value is not None:
                scalars[f"attention/{measure}/{tap}"] = value
    for tap, value in gradients.items():
        scalars[f"attention/gradient_norm/{tap}"] = value
    return scalars


def source_scalars(checks: Mapping[str, SourceCheck]) -> dict[str, float]:
    """Log tags and values: ``sources/<name>/top1`` and ``sources/<name>/relative_to_area/<tap>``."""
    scalars = {}
    for name, check in checks.items():
        scalars[f"sources/{name}/top1"] = check.top1
        for tap, value in check.relative_to_area.items():
            scalars[f"sources/{name}/relative_to_area/{tap}"] = value
    return scalars
