"""Model loading: a model, checkpoint, run folder, ``"random"`` or ``"imagenet"`` as one labelled AttentionResNet50.

The one resolver behind transfer, the attention functions and the command line: what they accept as "the
model", and the image size that goes with it (the size its run was trained at, when its checkpoint says).
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import NamedTuple, cast

import torch
from torch import nn

from ..config import DEFAULT_IMAGE_SIZE, IMAGENET, RANDOM, ExperimentConfig, ModelConfig
from ..models.attention_resnet import AttentionResNet50
from .checkpoint import load_checkpoint

RANDOM_LABEL = "random init (untrained)"
IMAGENET_LABEL = "ImageNet trunk"


class LoadedModel(NamedTuple):
    """A model to look at, with a label for titles and the run config it was saved with (if any)."""

    model: AttentionResNet50
    label: str
    experiment: ExperimentConfig | None


def resolve_model(
    model_or_checkpoint: nn.Module | LoadedModel | str | Path,
    model_config: ModelConfig | None = None,
    *,
    seed: int = 0,
    copy: bool = False,
) -> LoadedModel:
    """An :class:`AttentionResNet50` from a model, a checkpoint file or run folder, ``"random"`` or ``"imagenet"``.

    ``"random"`` builds a fresh model from ``model_config`` (default: ``ModelConfig()``) seeded with ``seed``, so
    the same call gives the same untrained weights every time; ``"imagenet"`` builds it with torchvision's ImageNet
    trunk. A model you pass is used as it is (any module with :class:`AttentionResNet50`'s ``forward`` and
    ``config`` will do), or as a deep copy with ``copy=True`` (what transfer finetunes, so the caller's model is
    never changed).

    Raises:
        CheckpointError: the checkpoint cannot be read.
        ModelError: ImageNet weights cannot be had for the configured trunk.
    """
    if isinstance(model_or_checkpoint, LoadedModel):
        if copy:
            return model_or_checkpoint._replace(model=deepcopy(model_or_checkpoint.model))
        return model_or_checkpoint
    if isinstance(model_or_checkpoint, nn.Module):
        model = deepcopy(model_or_checkpoint) if copy else model_or_checkpoint
        return LoadedModel(cast(AttentionResNet50, model), "model", None)
    name = str(model_or_checkpoint)
    if name == RANDOM:
        return LoadedModel(random_model(model_config or ModelConfig(), seed), RANDOM_LABEL, None)
    if name == IMAGENET:
        config = (model_config or ModelConfig()).updated(backbone_weights="imagenet")
        return LoadedModel(AttentionResNet50(config), IMAGENET_LABEL, None)
    checkpoint = load_checkpoint(model_or_checkpoint)
    label = f"{checkpoint.path.name if checkpoint.path else model_or_checkpoint} (step {checkpoint.step})"
    return LoadedModel(checkpoint.model, label, checkpoint.experiment)


def start_name(model_or_checkpoint: nn.Module | LoadedModel | str | Path) -> str:
    """The short name of a start point in results and tables: ``"model"`` for a model, ``"random"``,
    ``"imagenet"``, or the checkpoint's file or run folder name."""
    if isinstance(model_or_checkpoint, (nn.Module, LoadedModel)):
        return "model"
    return Path(str(model_or_checkpoint)).name


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
