"""Reptile meta-learning (Nichol, Achiam & Schulman 2018) over any ``nn.Module``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor


@dataclass
class Task:
    """One task to adapt to: a name (it selects the model's head) and an iterator of batches.

    Args:
        name: task name, e.g. ``"synthetic/colour"`` or ``"cub200"``; heads are kept per name.
        batches: yields ``(images, labels)`` batches; Reptile draws ``inner_steps`` of them.
        num_classes: number of classes, used to create the task's head on first sight.
        query: an optional held-out ``(images, labels)`` set (episodic tasks) to measure adaptation.
    """

    name: str
    batches: Iterator[tuple[Tensor, Tensor]]
    num_classes: int | None = None
    query: tuple[Tensor, Tensor] | None = None
