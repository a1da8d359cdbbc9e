"""Attention controls: uniform is average pooling, oracle follows the mask, shuffled moves maps between images."""

import pytest
import torch
import torch.nn.functional as F

from universal_attention import AttentionResNet50
from universal_attention.errors import ConfigError, ModelError
from universal_attention.models.controls import oracle_map, shuffled_map, uniform_map

from small import SMALL

TINY = SMALL
IMAGES = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AttentionResNet50(TINY).eval()


def _tap_features(model, images):
    taps, _ = model._trunk(model.normalise(images))
    return taps


@torch.no_grad()
def test_uniform_control_is_plain_average_pooling_per_tap(model):
    out = model(IMAGES, control="uniform")
    taps = _tap_features(model, IMAGES)
    expected = torch.cat([F.adaptive_avg_pool2d(taps[tap], 1).flatten(1) for tap in TINY.tap_layers()], dim=1)
    torch.testing.assert_close(out.features, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_oracle_control_puts_all_attention_on_the_object(model):
    masks = torch.zeros(3, 32, 32, dtype=torch.uint8)
    masks[:, 8:16, 16:24] = 1  # one 8 x 8 block: exactly cell (1, 2) of layer2.0's 4 x 4 grid
    out = model(IMAGES, control="oracle", masks=masks)
    grid = out.attention["layer2.0"]
    assert grid.shape == (3, 1, 4, 4)
    assert torch.allclose(grid[:, 0, 1, 2], torch.ones(3)) and float(grid.sum()) == pytest.approx(3.0)


def test_oracle_of_an_empty_mask_is_uniform():
    like = torch.zeros(2, 5, 4, 4)
    amap = oracle_map(torch.zeros(2, 16, 16), like, "softmax")
    torch.testing.assert_close(amap, torch.full((2, 1, 4, 4), 1 / 16))


def test_sigmoid_controls_are_gates():
    like = torch.zeros(1, 5, 2, 2)
    masks = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]])
    torch.testing.assert_close(uniform_map(like, "sigmoid"), torch.ones(1, 1, 2, 2))
    torch.testing.assert_close(oracle_map(masks, like, "sigmoid"), torch.tensor([[[[1.0, 0.0], [0.0, 0.25]]]]))


@torch.no_grad()
def test_shuffled_control_gives_each_image_another_image_s_learned_map(model):
    learned = model(IMAGES).attention
    shuffled = model(IMAGES, control="shuffled").attention
    for tap in TINY.tap_layers():
        torch.testing.assert_close(shuffled[tap], learned[tap].roll(1, dims=0))
    lone = torch.arange(4.0).view(1, 1, 2, 2)
    torch.testing.assert_close(shuffled_map(lone), torch.tensor([[[[3.0, 2.0], [1.0, 0.0]]]]))


def test_oracle_without_masks_and_unknown_controls_are_refused(model):
    with pytest.raises(ModelError, match="oracle attention needs the images' object masks"):
        model(IMAGES, control="oracle")
    with pytest.raises(ConfigError, match="unknown attention control.*sideways.*learned, uniform, oracle, shuffled"):
        model(IMAGES, control="sideways")


def test_a_model_without_attention_has_no_controls():
    with pytest.raises(ModelError, match="needs a model with attention"):
        AttentionResNet50(TINY.updated(attention=False))(IMAGES, control="uniform")
