"""AttentionResNet50: a ResNet trunk (ResNet50 by default) with "Learn to Pay Attention" taps and per-task heads.

Input convention (applied in one place, :meth:`AttentionResNet50.normalise`): images are ``[B, 3, H, W]``,
either ``uint8`` in 0..255 or floating point in 0..1; the model scales and applies the ImageNet mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, cast
from urllib.parse import quote

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ModelError
from .blocks import AttentionBlock, build_attention_block
from .controls import check_controls
from .trunks import block_channels, build_trunk

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_HEAD = "default"
TARGET_HEAD = "transfer-target"
"""The head a transfer adds for its target (and keeps in the models ``uattn transfer --save-model`` saves)."""


class AttentionOutput(NamedTuple):
    """What :meth:`AttentionResNet50.forward` returns.

    Attributes:
        logits: ``[B, classes]`` from the task's head, or ``None`` when the model has no head for it.
        features: ``[B, D]`` concatenated attention-pooled features of every tap (the head's input).
        attention: tap name -> ``[B, 1, h, w]`` map (softmax maps sum to 1 over ``h, w``); empty when
            attention is off.
    """

    logits: Tensor | None
    features: Tensor
    attention: dict[str, Tensor]


def module_key(name: str) -> str:
    """The ``nn.ModuleDict`` key of a task's head (``model.heads``) or a tap's attention block
    (``model.attention_blocks``): ``name`` percent-encoded, dots included (``"layer2.2"`` -> ``"layer2%2E2"``), since a
    module name cannot hold a dot; ``/`` and ``:`` stay, so ``"synthetic/colour"`` is its own key. Injective, and
    every state-dict key stays ASCII."""
    return quote(name, safe="/:").replace(".", "%2E")


class AttentionResNet50(nn.Module):
    """A ResNet trunk with attention taps weighted by a global query (Jetley et al. 2018).

    The trunk is configurable (``ModelConfig.trunk``: ResNet50, the seed's, by default; any name of
    :func:`~universal_attention.models.trunks.list_trunks`); it is a torchvision ``ResNet`` under ``backbone``, so
    its state dict loads into torchvision's own model of that name with only ``fc.*`` missing.

    Args:
        config: the model's settings; defaults reproduce the original experiment.
        num_classes: if given, adds a head named ``"default"`` used when ``forward`` gets no task.

    Example:
        >>> model = AttentionResNet50(num_classes=10)
        >>> out = model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
        >>> out.logits.shape, sorted(out.attention)
        (torch.Size([2, 10]), ['layer1.1', 'layer2.2', 'layer3.4', 'layer4'])
    """

    mean: Tensor  # ImageNet mean and std, [1, 3, 1, 1] buffers (not saved)
    std: Tensor

    def __init__(self, config: ModelConfig | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.backbone = build_trunk(self.config.trunk)
        self._load_backbone_weights(self.config.backbone_weights)
        if self.config.padding != "zeros":
            for module in self.backbone.modules():
                if isinstance(module, nn.Conv2d) and isinstance(module.padding, tuple) and any(module.padding):
                    module.padding_mode = self.config.padding
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.tap_channels = {tap: self._channels(tap) for tap in self.config.tap_layers()}
        if self.config.attention:
            self.query = nn.Linear(self._channels("layer4"), self.config.query_size)
            self.attention_blocks = nn.ModuleDict(
                {
                    module_key(tap): build_attention_block(
                        self.config.compatibility,
                        channels,
                        self.config.query_size,
                        self.config.alignment_size,
                        self.config.normalisation,
                    )
                    for tap, channels in self.tap_channels.items()
                }
            )
            self.feature_size = sum(self.tap_channels.values())
        else:
            self.feature_size = self._channels("layer4")
        self.heads = nn.ModuleDict()
        self.head_classes: dict[str, int] = {}
        self.class_names: dict[str, list[str]] = {}
        """Each head's class names, where they are known (from the dataset it was built for)."""
        if num_classes is not None:
            self.add_head(DEFAULT_HEAD, num_classes)

    @property
    def taps(self) -> list[str]:
        """The tap layers, in trunk order as configured."""
        return list(self.tap_channels)

    def _load_backbone_weights(self, source: str) -> None:
        if source == "none":
            return
        if source == "imagenet":
            state = _imagenet_state_dict(self.config.trunk)
        else:
            state = _file_state_dict(Path(source))
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        problem = state_dict_mismatch(self.backbone.state_dict(), state)
        if problem:
            raise ModelError(
                f"backbone weights {source} do not fit trunk {self.config.trunk}: {problem}; "
                f"expected a torchvision {self.config.trunk} state dict (or set model.trunk to the file's trunk)"
            )
        self.backbone.load_state_dict(state, strict=False)

    def _channels(self, tap: str) -> int:
        return block_channels(self.backbone.get_submodule(tap))

    def add_head(self, task: str, num_classes: int, class_names: Sequence[str] | None = None) -> nn.Linear:
        """Add (or replace) the linear head of ``task`` with ``num_classes`` outputs and return it; ``class_names``
        (one per output, e.g. the dataset's ``classes``) travel with the model into its checkpoints."""
        if num_classes < 1:
            raise ModelError(f"head '{task}' needs at least 1 class, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ModelError(f"head '{task}' has {num_classes} classes but {len(class_names)} class names")
        self.class_names.pop(task, None)
        if class_names is not None:
            self.class_names[task] = [str(name) for name in class_names]
        reference = next(self.backbone.parameters())
        head = nn.Linear(self.feature_size, num_classes).to(device=reference.device, dtype=reference.dtype)
        self.heads[module_key(task)] = head
        self.head_classes[task] = num_classes
        return head

    def has_head(self, task: str) -> bool:
        """Whether ``task`` has a head."""
        return task in self.head_classes

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 0..255 or float 0..1 images -> ImageNet-normalised float images."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        elif not images.is_floating_point():
            raise ModelError(f"images must be uint8 (0..255) or float (0..1), got {images.dtype}")
        return (images - self.mean) / self.std

    def _trunk(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        trunk = self.backbone
        x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(images))))
        taps: dict[str, Tensor] = {}
        for stage in STAGES:
            for index, block in enumerate(getattr(trunk, stage)):
                x = block(x)
                if f"{stage}.{index}" in self.tap_channels:
                    taps[f"{stage}.{index}"] = x
            if stage in self.tap_channels:
                taps[stage] = x
        return taps, x

    def forward(
        self, images: Tensor, task: str | None = None, *, control: str = "learned", masks: Tensor | None = None
    ) -> AttentionOutput:
        """Run the network; ``task`` picks the head (``None``: the default head, if any).

        ``control`` (``learned``, ``uniform``, ``oracle``, ``shuffled``; see
        :mod:`universal_attention.models.controls`) replaces every tap's learned map; ``oracle`` needs the
        object ``masks`` ``[B, H, W]`` (any resolution).
        """
        if control != "learned":
            check_controls([control])
            if not self.config.attention:
                raise ModelError(
                    f"attention control '{control}' needs a model with attention (its config has attention: false)"
                )
        with self._autocast(images):
            taps, final = self._trunk(self._prepared(images))
            attention: dict[str, Tensor] = {}
            if self.config.attention:
                query = self._query(final)
                pooled = []
                for tap, features in taps.items():
                    vector, attention[tap] = self.attention_block(tap)(features, query, control, masks)
                    pooled.append(vector)
                features = torch.cat(pooled, dim=1)
            else:
                features = F.adaptive_avg_pool2d(final, 1).flatten(1)
            logits = self._head_logits(features, task)
        return AttentionOutput(
            logits=None if logits is None else logits.float(),
            features=features.float(),
            attention={name: amap.float() for name, amap in attention.items()},
        )

    def tap_features(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The features of every tap (``[B, C, h, w]``) and the global query (``[B, query_size]``) for ``images``:
        what the attention blocks score (for diagnostics; :meth:`forward` runs the same)."""
        if not self.config.attention:
            raise ModelError("the model has no attention taps (its config has attention: false)")
        with self._autocast(images):
            taps, final = self._trunk(self._prepared(images))
            return taps, self._query(final)

    def attention_block(self, tap: str) -> AttentionBlock:
        """The attention block of tap ``tap``."""
        return cast(AttentionBlock, self.attention_blocks[module_key(tap)])

    def _prepared(self, images: Tensor) -> Tensor:
        images = self.normalise(images)
        if images.is_cuda and self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _autocast(self, images: Tensor) -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=images.is_cuda and self.config.bf16_autocast)

    def _query(self, final: Tensor) -> Tensor:
        return self.query(F.adaptive_avg_pool2d(final, 1).flatten(1))

    def _head_logits(self, features: Tensor, task: str | None) -> Tensor | None:
        name = DEFAULT_HEAD if task is None else task
        if name in self.head_classes:
            return self.heads[module_key(name)](features)
        if task is None:
            return None
        known = ", ".join(self.head_classes) or "none"
        raise ModelError(f"the model has no head for task '{task}' (heads: {known}); call add_head(task, num_classes)")

    def to_device(self, device: str | torch.device) -> AttentionResNet50:
        """Move to ``device``; on CUDA also switch weights to channels_last when the config says so."""
        self.to(device)
        if torch.device(device).type == "cuda" and self.config.channels_last:
            self.to(memory_format=torch.channels_last)
        return self


def state_dict_mismatch(expected: dict[str, Tensor], given: dict[str, Tensor]) -> str:
    """What keeps ``given`` from loading where ``expected`` is (keys missing, foreign keys, other shapes or
    non-real dtypes), as words; empty when it fits."""
    missing = [key for key in expected if key not in given]
    foreign = [key for key in given if key not in expected]
    reshaped = [key for key in expected.keys() & given.keys() if given[key].shape != expected[key].shape]
    complex_or_odd = [
        key for key in expected.keys() & given.keys() if given[key].is_complex() or given[key].dtype == torch.bool
    ]
    problems = []
    for words, keys in (
        ("missing", missing),
        ("not in the trunk", foreign),
        ("of another shape", sorted(reshaped)),
        ("not real numbers", sorted(complex_or_odd)),
    ):
        if keys:
            problems.append(f"{len(keys)} key(s) {words} (e.g. {keys[0]})")
    return ", ".join(problems)


def _imagenet_state_dict(trunk: str) -> dict[str, Tensor]:
    from .pretrained import imagenet_state_dict

    return imagenet_state_dict(trunk)


def _file_state_dict(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(
            f"backbone weights file {path} not found; give a .safetensors state dict of the trunk, 'imagenet' or 'none'"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"backbone weights file {path} is not a readable safetensors file ({error})") from None
