"""The trunk registry: every convolutional trunk the attention network can be built on, by name.

Each trunk is a torchvision ``ResNet`` (so its state dict loads into torchvision's own model): the ResNet family
with its ImageNet weights through torchvision's weights API, plus ``resnet10``, torchvision's ``ResNet`` class with
one BasicBlock per stage, for tests and CPU demos. Tap names are the trunk's module names (``layerN``,
``layerN.i``; :func:`universal_attention.config.trunk_tap_names`) and a tap's channels come from its last block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from ..config import TRUNK_STAGES, default_taps, trunk_tap_names
from ..errors import ModelError


@dataclass(frozen=True)
class Trunk:
    """One registered trunk: how to build it, and which torchvision weights enum holds its ImageNet weights."""

    name: str
    build: Callable[[], ResNet]
    weights: str | None  # a torchvision weights enum's name, e.g. "ResNet50_Weights"; None: no published weights
    summary: str


def _resnet10() -> ResNet:
    return ResNet(BasicBlock, [1, 1, 1, 1])


def _torchvision(name: str) -> Callable[[], ResNet]:
    def build() -> ResNet:
        return getattr(torchvision.models, name)(weights=None)

    return build


TRUNKS: dict[str, Trunk] = {
    "resnet10": Trunk("resnet10", _resnet10, None, "one BasicBlock per stage: tests and CPU demos"),
    "resnet18": Trunk("resnet18", _torchvision("resnet18"), "ResNet18_Weights", "BasicBlocks 2-2-2-2"),
    "resnet34": Trunk("resnet34", _torchvision("resnet34"), "ResNet34_Weights", "BasicBlocks 3-4-6-3"),
    "resnet50": Trunk("resnet50", _torchvision("resnet50"), "ResNet50_Weights", "Bottlenecks 3-4-6-3 (the seed's)"),
    "resnet101": Trunk("resnet101", _torchvision("resnet101"), "ResNet101_Weights", "Bottlenecks 3-4-23-3"),
    "resnet152": Trunk("resnet152", _torchvision("resnet152"), "ResNet152_Weights", "Bottlenecks 3-8-36-3"),
    "wide_resnet50_2": Trunk(
        "wide_resnet50_2", _torchvision("wide_resnet50_2"), "Wide_ResNet50_2_Weights", "Bottlenecks, twice as wide"
    ),
    "resnext50_32x4d": Trunk(
        "resnext50_32x4d", _torchvision("resnext50_32x4d"), "ResNeXt50_32X4D_Weights", "grouped Bottlenecks 32x4d"
    ),
}


def list_trunks() -> list[str]:
    """The names of every registered trunk, smallest first within each family."""
    return list(TRUNKS)


def get_trunk(name: str) -> Trunk:
    """The registered trunk ``name``.

    Raises:
        ModelError: no trunk has that name (the message lists them).
    """
    if name not in TRUNKS:
        raise ModelError(f"unknown trunk '{name}'; choose one of {', '.join(TRUNKS)}")
    return TRUNKS[name]


def build_trunk(name: str) -> ResNet:
    """A freshly initialised trunk without its classifier (``fc`` is an identity)."""
    trunk = get_trunk(name).build()
    trunk.fc = nn.Identity()
    return trunk


def block_channels(module: nn.Module) -> int:
    """Output channels of a stage (its last block) or of one block: its last BatchNorm's features (``bn2`` of a
    BasicBlock, ``bn3`` of a Bottleneck)."""
    block = module[-1] if isinstance(module, nn.Sequential) else module
    norms = [child for name, child in block.named_children() if name.startswith("bn")]
    if not norms or not isinstance(norms[-1], nn.BatchNorm2d):
        raise ModelError(f"cannot tell the output channels of {type(block).__name__}: it has no bnN layer")
    return norms[-1].num_features


def imagenet_url(name: str) -> str:
    """The download address of a trunk's ImageNet weights (torchvision's default weights for it).

    Raises:
        ModelError: the trunk has no published ImageNet weights.
    """
    trunk = get_trunk(name)
    if trunk.weights is None:
        raise ModelError(
            f"trunk {name} has no ImageNet weights; set model.backbone_weights to 'none' or a local .safetensors "
            f"state dict, or choose a trunk with weights ({', '.join(n for n, t in TRUNKS.items() if t.weights)})"
        )
    return getattr(torchvision.models, trunk.weights).DEFAULT.url


@dataclass(frozen=True)
class TrunkInfo:
    """What ``uattn config trunks`` prints of a trunk."""

    name: str
    parameters: int
    stages: tuple[int, int, int, int]
    default_taps: tuple[str, ...]
    taps: tuple[str, ...]
    imagenet: bool
    summary: str


def trunk_info(name: str) -> TrunkInfo:
    """Parameter count (without ``fc``), blocks per stage and tap names of a trunk, built on the meta device (no
    memory, no arithmetic)."""
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_trunk(name).parameters())
    trunk = get_trunk(name)
    return TrunkInfo(
        name=name,
        parameters=parameters,
        stages=TRUNK_STAGES[name],
        default_taps=default_taps(name),
        taps=trunk_tap_names(name),
        imagenet=trunk.weights is not None,
        summary=trunk.summary,
    )
