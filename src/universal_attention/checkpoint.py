"""Checkpoints: safetensors files that rebuild an AttentionResNet50 on their own, written atomically.

A checkpoint holds the model's state dict plus, in the safetensors metadata, the format name and
version, the library version, the resolved ``ModelConfig``, the heads (task -> classes), the step,
optionally the whole ``ExperimentConfig`` and JSON ``extra`` data. Extra tensors needed to resume a run
exactly (optimiser state, RNG states) are stored under the ``state/`` prefix. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from ._version import __version__
from .config import ExperimentConfig, ModelConfig
from .errors import CheckpointError

FORMAT = "universal-attention-checkpoint"
FORMAT_VERSION = 1
STATE_PREFIX = "state/"
_STEP_FILE = re.compile(r"step-(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the rebuilt :class:`~universal_attention.AttentionResNet50` with its heads, on CPU.
        config: the model's config.
        step: the meta-training step the checkpoint was taken at.
        metadata: the ``extra`` JSON data saved with it (plus ``library_version``).
        experiment: the run's whole config, when it was saved with one.
        state: the extra tensors saved under ``state/`` (for exact resume).
        path: where it was read from.
    """

    model: Any
    config: ModelConfig
    step: int
    metadata: dict[str, Any]
    experiment: ExperimentConfig | None = None
    state: dict[str, Tensor] = field(default_factory=dict)
    path: Path | None = None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save_checkpoint(
    path: str | Path,
    model: Any,
    config: ExperimentConfig | None = None,
    *,
    step: int = 0,
    extra: dict[str, Any] | None = None,
    state: dict[str, Tensor] | None = None,
) -> Path:
    """Save ``model`` (an AttentionResNet50) atomically as a self-describing safetensors checkpoint.

    Args:
        path: target file (``.safetensors``); parent folders are created.
        model: the model; its ``config`` and heads go into the metadata.
        config: the whole run's config, saved too when given.
        step: meta-training step.
        extra: JSON-serialisable data (metrics, sampler counters, ...).
        state: extra tensors for exact resume, stored under ``state/<name>``.

    Returns:
        The path written.

    Raises:
        CheckpointError: ``model`` is not an AttentionResNet50 or ``config`` is not an ExperimentConfig
            (nothing is written then: loading could not rebuild the model from such a file).
    """
    from .model import AttentionResNet50

    if not isinstance(model, AttentionResNet50):
        raise CheckpointError(f"save_checkpoint needs an AttentionResNet50, got {type(model).__name__}; save other "
                              "modules with safetensors.torch.save_file")
    if config is not None and not isinstance(config, ExperimentConfig):
        raise CheckpointError(f"save_checkpoint(config=...) takes the run's ExperimentConfig or None, got "
                              f"{type(config).__name__}; the model's own ModelConfig is saved from model.config")
    path = Path(path)
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    for name, value in (state or {}).items():
        tensors[STATE_PREFIX + name] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "model_config": model.config.model_dump_json(),
        "heads": json.dumps(model.head_classes),
        "step": str(int(step)),
        "extra": json.dumps(extra or {}),
    }
    if config is not None:
        metadata["experiment_config"] = config.model_dump_json()
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest ``step-N.safetensors`` of a run folder or checkpoints folder."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        candidates = sorted(folder.glob("step-*.safetensors"), key=_step_of_name, reverse=True)
        if not candidates:
            raise CheckpointError(f"no checkpoint in {folder}: expected step-NNNNNN.safetensors files there")
        return candidates[0]
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; give a .safetensors file written by uattn meta-train "
                              "or save_checkpoint, or a run folder")
    return path


def _step_of_name(path: Path) -> int:
    match = _STEP_FILE.search(path.name)
    return int(match.group(1)) if match else -1


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw metadata of a checkpoint file, after checking that it is one of ours."""
    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or another format: "
                              f"{error}); expected a file written by uattn meta-train or save_checkpoint") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a universal-attention checkpoint (no "
                              f"'{FORMAT}' format in its metadata); a plain ResNet50 state dict goes in "
                              "model.backbone_weights instead")
    if int(metadata.get("format_version", "0")) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {metadata['format_version']}, newer than this library "
                              f"reads ({FORMAT_VERSION}); upgrade universal-attention")
    return metadata


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint file (or the newest one in a run folder) and rebuild its model on CPU.

    Raises:
        CheckpointError: the file is missing, truncated, or not a universal-attention checkpoint.
    """
    from .model import AttentionResNet50

    path = resolve_checkpoint(path)
    metadata = read_metadata(path)
    try:
        model_config = ModelConfig.model_validate_json(metadata["model_config"])
        experiment = (ExperimentConfig.model_validate_json(metadata["experiment_config"])
                      if "experiment_config" in metadata else None)
        heads = json.loads(metadata["heads"])
        extra = json.loads(metadata.get("extra", "{}"))
    except (KeyError, ValueError, ValidationError) as error:
        raise CheckpointError(f"{path} has damaged metadata ({type(error).__name__}); it cannot rebuild a model") from None
    model = AttentionResNet50(model_config.model_copy(update={"backbone_weights": "none"}))
    for task, classes in heads.items():
        model.add_head(task, classes)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); use an earlier checkpoint") from None
    state = {name[len(STATE_PREFIX):]: value for name, value in tensors.items() if name.startswith(STATE_PREFIX)}
    weights = {name: value for name, value in tensors.items() if not name.startswith(STATE_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its own model config: {str(error).splitlines()[0]}") from None
    model.config = model_config
    extra["library_version"] = metadata.get("library_version")
    return Checkpoint(model=model, config=model_config, step=int(metadata.get("step", "0")), metadata=extra,
                      experiment=experiment, state=state, path=path)


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken at ``step``: ``step-000200.safetensors``."""
    return f"step-{step:06d}.safetensors"


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())
