"""Attention in TensorBoard: overlays of a run's watched images and the entropy of every tap's maps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .model import AttentionResNet50
from .visualize import attention_grid, attention_maps, grid_tensor

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def log_attention(writer: SummaryWriter, model: AttentionResNet50, images: torch.Tensor, step: int) -> None:
    """Overlays of the watched images and a histogram of attention entropy per tap layer."""
    maps = attention_maps(model, images)
    writer.add_image("attention/watched", grid_tensor(attention_grid(images.cpu(), maps)), step)
    for name, amap in maps.items():
        flat = amap.flatten(1).clamp_min(1e-12)
        flat = flat / flat.sum(1, keepdim=True)
        writer.add_histogram(f"attention_entropy/{name}", -(flat * flat.log()).sum(1), step)
