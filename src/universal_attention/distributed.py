"""Multi-process meta-training under ``torchrun``: process-group set-up and the all-reduces Reptile needs.

``torchrun --nproc_per_node N -m universal_attention.cli meta-train ...`` starts N processes; each one adapts
to its own tasks, and the summed adapted weights are all-reduced, which is batched Reptile over
``meta_batch_size x N`` tasks. Multi-node runs use torchrun's own rendezvous options (``--nnodes``,
``--rdzv-endpoint``); nothing here is specific to one machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from .devices import resolve_device
from .errors import ConfigError

TIMEOUT = timedelta(minutes=30)
"""How long a process waits for the others in any collective before it fails instead of hanging: longer than
the main process's periodic target check, during which the others wait at the next all-reduce."""


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands: its rank, the number of processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009  # a device is immutable

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs and checkpoints."""
        return self.rank == 0


def launch_variable(name: str, default: int) -> int:
    """A whole-number variable of torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``).

    Raises:
        ConfigError: it is set to something that is not a whole number of at least 0.
    """
    text = os.environ.get(name, str(default)).strip()
    if not text.isascii() or not text.isdigit():
        raise ConfigError(
            f"environment variable {name} is {text[:40]!r}, not a whole number; torchrun sets it "
            "(unset it to run one process)"
        )
    return int(text)


def launched_by_torchrun() -> bool:
    """Whether torchrun's environment variables are set (``WORLD_SIZE`` above 1)."""
    return launch_variable("WORLD_SIZE", 1) > 1


def init_distributed(device: str = "auto") -> DistributedInfo:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); a single process otherwise.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` (see
            :func:`~universal_attention.devices.resolve_device`); each CUDA rank uses ``cuda:<LOCAL_RANK>``.

    Raises:
        ConfigError: ``device`` is not a device.
    """
    resolved = resolve_device(device)
    if not launched_by_torchrun():
        return DistributedInfo(device=resolved)
    use_cuda = resolved.type == "cuda"
    local_rank = launch_variable("LOCAL_RANK", 0)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return DistributedInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"),
    )


def is_distributed() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensors: list[Tensor]) -> None:
    """Sum ``tensors`` over all processes, in place, with one flattened all-reduce."""
    if not tensors or not is_distributed():
        return
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for tensor, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        tensor.copy_(reduced)


def all_reduce_count(count: float) -> float:
    """Sum a number over all processes."""
    if not is_distributed():
        return count
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    value = torch.tensor([float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return float(value)


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def destroy() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
