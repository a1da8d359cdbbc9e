"""What a run logs of its attention: overlays of its watched images and the entropy of every tap's maps."""

from __future__ import annotations

import torch

from ..models.attention_resnet import AttentionResNet50
from ..runs.loggers import RunLogger
from .maps import attention_maps
from .pictures import attention_grid


def log_attention(logger: RunLogger, model: AttentionResNet50, images: torch.Tensor, step: int) -> None:
    """Overlays of the watched images and a histogram of attention entropy per tap layer."""
    maps = attention_maps(model, images)
    logger.image("attention/watched", attention_grid(images.cpu(), maps), step)
    for name, amap in maps.items():
        flat = amap.flatten(1).clamp_min(1e-12)
        flat = flat / flat.sum(1, keepdim=True)
        logger.histogram(f"attention_entropy/{name}", -(flat * flat.log()).sum(1), step)
