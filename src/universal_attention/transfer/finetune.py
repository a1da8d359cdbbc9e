"""Finetuning on a fixed budget of optimiser steps: the new head, the batch stream, BatchNorm and the schedule.

Few-shot transfer is only comparable across shot counts when every run gets the same number of updates, so
a run takes exactly ``steps`` optimiser steps whatever the number of training images: batches are drawn from
one shuffled pass over the training shots after another (a set smaller than a batch is used whole every
step). Without ``steps`` a run trains ``epochs`` passes instead (full-dataset transfer).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TransferConfig
from ..errors import ModelError
from ..models.attention_resnet import AttentionResNet50, module_key
from ..optim import adam

PROTOTYPE_SCALE = 10.0
"""Logit scale of prototype heads: logits are ``PROTOTYPE_SCALE`` times the cosine between an image's
feature and its class prototype, for a feature of average length (a cosine classifier's usual range)."""
LOSS_POINTS = 10
"""A run's training-loss curve keeps the mean loss of this many equal parts of its steps."""


def total_steps(count: int, config: TransferConfig) -> int:
    """Optimiser steps of one run on ``count`` training images: ``steps``, else ``epochs`` full passes."""
    if config.steps is not None:
        return config.steps
    return config.epochs * max(1, count // min(config.batch_size, count))


def batch_indices(count: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless batches of indices into ``range(count)``: one shuffled pass after another, the last partial
    batch of a pass dropped; a set no bigger than a batch is one batch (reshuffled) every time."""
    size = min(batch_size, count)
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - size + 1, size):
            yield order[start : start + size]


def learning_rate_factor(step: int, steps: int, schedule: str) -> float:
    """The learning rate of ``step`` (0-based) of ``steps`` as a fraction of the configured one: 1 for
    ``constant``, half a cosine from 1 down to 0 for ``cosine``."""
    if schedule != "cosine":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * step / steps))


def set_batchnorm(model: nn.Module, policy: str) -> None:
    """Training mode for everything; with ``frozen``, BatchNorm layers stay in eval mode (they normalise with
    the start model's running statistics and do not update them) while their weights still train."""
    model.train()
    if policy == "frozen":
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


@torch.no_grad()
def init_head(
    head: nn.Linear, kind: str, generator: torch.Generator, features: Tensor | None = None, labels: Tensor | None = None
) -> None:
    """Set a new head's weights: ``zeros``, ``random`` (torch's default uniform range, from ``generator``) or
    ``prototypes`` (each class's weights are its normalised mean normalised feature; ``features`` and
    ``labels`` of the training shots needed)."""
    if kind == "zeros":
        head.weight.zero_()
        head.bias.zero_()
    elif kind == "random":
        bound = 1.0 / math.sqrt(head.in_features)
        head.weight.copy_(torch.rand(head.weight.shape, generator=generator) * 2 * bound - bound)
        head.bias.copy_(torch.rand(head.bias.shape, generator=generator) * 2 * bound - bound)
    else:
        if features is None or labels is None:
            raise ModelError("head_init 'prototypes' needs the training features and labels")
        unit = F.normalize(features.float(), dim=1)
        prototypes = torch.stack([unit[labels == c].mean(0) for c in range(head.out_features)])
        scale = PROTOTYPE_SCALE / features.float().norm(dim=1).mean().clamp_min(1e-6)
        head.weight.copy_(F.normalize(prototypes, dim=1) * scale)
        head.bias.zero_()


def loss_curve(losses: list[float]) -> list[float]:
    """The mean loss of each of (at most) :data:`LOSS_POINTS` equal parts of a run."""
    parts = min(LOSS_POINTS, len(losses))
    bounds = [round(len(losses) * part / parts) for part in range(parts + 1)]
    return [sum(losses[a:b]) / (b - a) for a, b in itertools.pairwise(bounds)]


def finetune(
    model: AttentionResNet50,
    head: str,
    images: Tensor,
    labels: Tensor,
    masks: Tensor | None,
    config: TransferConfig,
    control: str,
    device: torch.device,
    generator: torch.Generator,
) -> list[float]:
    """Train every parameter (trunk at ``lr``, the new ``head`` at ``head_lr``) for :func:`total_steps` steps.

    Returns the loss of every step.
    """
    head_parameters = list(model.heads[module_key(head)].parameters())
    head_ids = {id(p) for p in head_parameters}
    optimizer = adam(
        [
            {"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": config.lr},
            {"params": head_parameters, "lr": config.head_lr or config.lr},
        ]
    )
    steps = total_steps(len(labels), config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, steps, config.schedule)
    )
    set_batchnorm(model, config.batchnorm)
    losses = []
    for _, batch in zip(range(steps), batch_indices(len(labels), config.batch_size, generator)):
        batch_masks = None if masks is None else masks[batch].to(device)
        logits = model(images[batch].to(device), head, control=control, masks=batch_masks).logits
        loss = F.cross_entropy(logits, labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses
