"""Model loading: a model, a checkpoint file or run folder, or ``"random"``, as one AttentionResNet50 with a label.

What the attention functions and ``uattn visualize`` / ``uattn evaluate-attention`` accept as "the model", and the
image size that goes with it (the size its run was trained at, when its checkpoint says).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, cast

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .config import ExperimentConfig, ModelConfig
from .model import AttentionResNet50

RANDOM = "random"
RANDOM_LABEL = "random init (untrained)"
DEFAULT_IMAGE_SIZE = 128


class LoadedModel(NamedTuple):
    """A model to look at, with a label for titles and the run config it was saved with (if any)."""

    model: AttentionResNet50
    label: str
    experiment: ExperimentConfig | None


def resolve_model(
    model_or_checkpoint: nn.Module | LoadedModel | str | Path, model_config: ModelConfig | None = None
) -> LoadedModel:
    """An :class:`AttentionResNet50` from a model, a checkpoint file or run folder, or ``"random"``.

    ``"random"`` builds a fresh model from ``model_config`` (default: ``ModelConfig()``) with seed 0, so
    the same call gives the same untrained weights every time. A model you pass is used as it is (any module
    with :class:`AttentionResNet50`'s ``forward`` and ``config`` will do).

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    if isinstance(model_or_checkpoint, LoadedModel):
        return model_or_checkpoint
    if isinstance(model_or_checkpoint, nn.Module):
        return LoadedModel(cast(AttentionResNet50, model_or_checkpoint), "model", None)
    if str(model_or_checkpoint) == RANDOM:
        return LoadedModel(random_model(model_config or ModelConfig()), RANDOM_LABEL, None)
    checkpoint = load_checkpoint(model_or_checkpoint)
    label = f"{checkpoint.path.name if checkpoint.path else model_or_checkpoint} (step {checkpoint.step})"
    return LoadedModel(checkpoint.model, label, checkpoint.experiment)


def random_model(config: ModelConfig, seed: int = 0) -> AttentionResNet50:
    """A freshly initialised model, seeded without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AttentionResNet50(config.updated(backbone_weights="none"))


def image_size_for(experiment: ExperimentConfig | None, image_size: int | None = None) -> int:
    """The square side images are prepared at: ``image_size`` when given, else the run config's
    ``data.image_size`` (a checkpoint saved with one), else :data:`DEFAULT_IMAGE_SIZE`."""
    if image_size is not None:
        return image_size
    return experiment.data.image_size if experiment is not None else DEFAULT_IMAGE_SIZE
