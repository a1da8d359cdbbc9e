"""Adam in one place: PyTorch's fused kernel wherever the parameters allow it.

PyTorch's default Adam on the CPU updates tensor by tensor; for the model's 177 tensors that loop costs about a
sixth of a training step of the quickstart model (batch 16, 64 px). The fused kernel does the same update in one
pass (the same arithmetic, up to rounding), on the CPU and on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

FUSED_DEVICES = ("cpu", "cuda")


def adam(parameters: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **options: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(parameters, **options)``, fused when every parameter is a floating-point tensor on the
    CPU or a CUDA device; ``parameters`` may be tensors or parameter groups, as for ``torch.optim.Adam``."""
    items: list[Any] = list(parameters)
    tensors: list[torch.Tensor] = [t for item in items for t in (item["params"] if isinstance(item, dict) else [item])]
    fused = all(t.is_floating_point() and t.device.type in FUSED_DEVICES for t in tensors)
    return torch.optim.Adam(items, fused=fused, **options)
