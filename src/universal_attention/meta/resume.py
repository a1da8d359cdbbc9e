"""Whether a run may continue from a checkpoint: the run's own, with resume state that validates.

The checkpoint's embedded config must be the run's, up to what a resume may change, and its resume state must be
well formed; both are checked before any of it is applied. A checkpoint copied in from another run is refused
with the keys that differ; one whose resume state does not validate (an optimiser state of the wrong shape, a
generator state of the wrong dtype, a counter that is not one whole number) is skipped like a truncated file, and
the next older one is tried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from ..config import ExperimentConfig
from ..runs.folder import RESUME_OVERRIDES, differing_keys

_OPTIMISER_KEY = re.compile(r"^reptile\.(outer|inner)\.(\d+)\.(.+)$")
_SCALAR_STATE_KEYS = ("step",)
"""Optimiser state entries that are one number (Adam's step count), not a tensor shaped like its parameter."""


def foreign_keys(saved: ExperimentConfig | None, config: ExperimentConfig) -> list[str]:
    """Dotted keys in which a checkpoint's run config differs from ``config`` beyond what resuming may change
    (:data:`~universal_attention.runs.folder.RESUME_OVERRIDES`); none for a file that records no run config."""
    if saved is None:
        return []
    return [key for key in differing_keys(saved, config) if key not in RESUME_OVERRIDES]


def _generator_problem(name: str, value: torch.Tensor) -> str | None:
    if value.dtype != torch.uint8 or value.dim() != 1:
        return f"{name} is {value.dtype} of shape {tuple(value.shape)}, not a generator state (uint8, 1-D)"
    try:
        torch.Generator().set_state(value)
    except RuntimeError:
        return f"{name} is not a generator state ({value.numel()} bytes)"
    return None


def _number_problem(name: str, value: torch.Tensor, *, whole: bool) -> str | None:
    """A counter must be one whole number, at least 0; a score one real number (-inf and NaN stand for "none
    yet", as a run holds them before its first check)."""
    kind_ok = not value.is_complex() and (not whole or not value.is_floating_point())
    if value.numel() != 1 or not kind_ok:
        wanted = "one whole number" if whole else "one real number"
        return f"{name} is {value.dtype} of shape {tuple(value.shape)}, not {wanted}"
    if whole and int(value) < 0:
        return f"{name} is negative ({int(value)})"
    return None


def resume_state_problem(
    state: Mapping[str, torch.Tensor],
    *,
    world_size: int,
    outer_shapes: Sequence[torch.Size],
    inner_shapes: Sequence[torch.Size],
) -> str | None:
    """What is wrong with a checkpoint's resume state for a run of ``world_size`` processes whose outer
    optimiser holds parameters of ``outer_shapes`` and whose model has parameters of ``inner_shapes``; ``None``
    when every entry can be applied as it is."""
    for rank in range(world_size):
        for name in (f"sampler.rank{rank}.generator", f"rng.rank{rank}.torch"):
            if name in state and (problem := _generator_problem(name, state[name])):
                return problem
    if f"sampler.rank{world_size - 1}.generator" not in state:
        return "it has no sampler state"
    if "rng.torch" not in state and "rng.rank0.torch" not in state:
        return "it has no random-generator state"
    if "rng.torch" in state and (problem := _generator_problem("rng.torch", state["rng.torch"])):
        return problem
    for name, whole in (("sampler.tasks_sampled", True), ("reptile.step", True)):
        if name not in state:
            return f"it has no {name}"
        if problem := _number_problem(name, state[name], whole=whole):
            return problem
    for name in ("run.best_top1", "run.target_top1"):
        if name in state and (problem := _number_problem(name, state[name], whole=False)):
            return problem
    shapes = {"outer": outer_shapes, "inner": inner_shapes}
    for name, value in state.items():
        match = _OPTIMISER_KEY.match(name)
        if match is None:
            continue
        which, index, entry = match.group(1), int(match.group(2)), match.group(3)
        if index >= len(shapes[which]):
            return f"{name} belongs to no parameter (the run has {len(shapes[which])})"
        if value.is_complex() or (not value.is_floating_point() and entry not in _SCALAR_STATE_KEYS):
            return f"{name} is {value.dtype}, not a real floating-point tensor"
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"{name} has NaN or infinite values"
        expected = torch.Size([]) if entry in _SCALAR_STATE_KEYS else shapes[which][index]
        if value.shape != expected and not (entry in _SCALAR_STATE_KEYS and value.numel() == 1):
            return f"{name} has shape {tuple(value.shape)}, but its parameter needs {tuple(expected)}"
    return None
