"""Device resolution: the ``torch.device`` that a name such as ``"auto"``, ``"cpu"`` or ``"cuda:1"`` means.

One way everywhere: the library's functions, the command line and torchrun runs."""

from __future__ import annotations

import torch

from .errors import ConfigError

AUTO = "auto"


def resolve_device(name: str | torch.device = AUTO) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as torch reads it.

    Raises:
        ConfigError: ``name`` is not a device, in one line.
    """
    if isinstance(name, torch.device):
        return name
    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
