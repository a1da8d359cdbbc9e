"""The small model that every test builds unless it is about ResNet50 itself (its shapes, torchvision's state dict,
ImageNet weights): the ``resnet10`` trunk (one BasicBlock per stage) with narrow attention."""

from __future__ import annotations

from universal_attention import ModelConfig

SMALL_TRUNK = "resnet10"
SMALL_TAPS = ("layer1.0", "layer2.0", "layer3.0")
SMALL = ModelConfig(trunk=SMALL_TRUNK, alignment_size=8, query_size=8)
"""The small model's config (its taps: the trunk's defaults, ``layer1.0, layer2.0, layer3.0, layer4``)."""
SMALL_OVERRIDES = [
    f"model.trunk={SMALL_TRUNK}",
    f"model.taps=[{', '.join(SMALL_TAPS)}]",
    "model.alignment_size=8",
    "model.query_size=8",
]
"""``--set`` overrides that turn a preset (the presets' own taps included) into the small model."""
