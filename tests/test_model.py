import pytest
import torch
import torchvision
from safetensors.torch import save_file

from universal_attention import AttentionResNet50, ModelConfig, load_config
from universal_attention.errors import ConfigError, ModelError
from universal_attention.models.attention_resnet import module_key

from small import SMALL

IMAGES = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("compatibility", ["additive", "dot", "parametrised", "query_free"])
@pytest.mark.parametrize("normalisation", ["softmax", "sigmoid"])
def test_every_compatibility_and_normalisation_gives_maps_of_tap_shape(compatibility, normalisation):
    torch.manual_seed(0)
    model = AttentionResNet50(ModelConfig(compatibility=compatibility, normalisation=normalisation), num_classes=5)
    out = model(IMAGES)
    assert out.logits.shape == (2, 5)
    assert out.features.shape == (2, 256 + 512 + 1024 + 2048)
    sizes = {"layer1.1": 16, "layer2.2": 8, "layer3.4": 4, "layer4": 2}
    assert {name: tuple(amap.shape) for name, amap in out.attention.items()} == {
        name: (2, 1, size, size) for name, size in sizes.items()
    }
    for amap in out.attention.values():
        assert amap.min() >= 0
        if normalisation == "softmax":
            torch.testing.assert_close(amap.sum(dim=(2, 3)), torch.ones(2, 1))
        else:
            assert amap.max() <= 1


def test_attention_off_is_the_plain_pooled_encoder():
    model = AttentionResNet50(ModelConfig(attention=False), num_classes=3)
    out = model(IMAGES)
    assert out.attention == {}
    assert out.features.shape == (2, 2048)
    assert not hasattr(model, "attention_blocks")


def test_taps_are_configurable_by_module_name():
    model = AttentionResNet50(SMALL.updated(taps=("layer2", "layer3.0")))
    out = model(IMAGES)
    assert sorted(out.attention) == ["layer2", "layer3.0"] == sorted(model.taps)
    assert out.features.shape == (2, 128 + 256)
    assert out.logits is None


def test_unknown_tap_lists_the_trunk_s_names():
    with pytest.raises(
        ConfigError, match=r"taps: unknown tap layer\(s\) layer5 for trunk resnet50; choose from layer1.0, "
    ):
        ModelConfig().updated(taps=("layer5",))
    with pytest.raises(ConfigError, match=r"layer2.2 for trunk resnet18; choose from layer1.0, layer1.1, layer1, "):
        load_config(overrides=["model.trunk=resnet18", "model.taps=[layer2.2]"])


def test_uint8_and_unit_float_inputs_are_the_same_image():
    model = AttentionResNet50(SMALL, num_classes=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IMAGES).logits, model(IMAGES.float() / 255).logits)


def test_heads_per_task():
    model = AttentionResNet50(SMALL)
    model.add_head("synthetic/colour", 4)
    model.add_head("folder:/tmp/a.b", 7)
    assert model(IMAGES, "synthetic/colour").logits.shape == (2, 4)
    assert model(IMAGES, "folder:/tmp/a.b").logits.shape == (2, 7)
    assert model.head_classes == {"synthetic/colour": 4, "folder:/tmp/a.b": 7}
    with pytest.raises(ModelError, match="no head for task 'other'"):
        model(IMAGES, "other")


def test_backbone_state_dict_loads_into_torchvision_resnet50_with_only_fc_missing():
    model = AttentionResNet50()
    resnet = torchvision.models.resnet50()
    result = resnet.load_state_dict(model.backbone.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []


def test_backbone_weights_from_a_safetensors_file(tmp_path):
    torch.manual_seed(1)
    resnet = torchvision.models.resnet50()
    path = tmp_path / "resnet50.safetensors"
    save_file({name: value.contiguous() for name, value in resnet.state_dict().items()}, str(path))
    model = AttentionResNet50(ModelConfig(backbone_weights=str(path)))
    torch.testing.assert_close(model.backbone.conv1.weight, resnet.conv1.weight)


def test_missing_backbone_weights_file_is_one_line(tmp_path):
    with pytest.raises(ModelError, match="backbone weights file .*missing.safetensors not found"):
        AttentionResNet50(ModelConfig(backbone_weights=str(tmp_path / "missing.safetensors")))


def test_gradients_reach_attention_and_trunk():
    model = AttentionResNet50(SMALL, num_classes=3)
    model(IMAGES).logits.sum().backward()
    assert model.attention_blocks[module_key("layer2.0")].vector.weight.grad is not None
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
