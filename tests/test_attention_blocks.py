"""The attention blocks compute the paper's formulas: checked against a direct convolutional reading of each.

The blocks apply their 1x1 projections as matrix products and fold the query where the score is linear in the
features; these references apply the same weights as convolutions, elementwise, as the formulas are written.
"""

import pytest
import torch

from universal_attention.models.blocks import build_attention_block

CHANNELS, QUERY, ALIGNMENT = 24, 16, 12


def reference_scores(block, features: torch.Tensor, query: torch.Tensor, compatibility: str) -> torch.Tensor:
    """``[B, 1, h, w]`` scores by the formulas, with the block's own weights."""
    conv = torch.nn.functional.conv2d
    if compatibility == "additive":  # w . tanh(W_l l + W_g g)
        aligned = conv(features, block.project_features.weight) + block.project_query(query)[:, :, None, None]
        return conv(torch.tanh(aligned), block.vector.weight)
    if compatibility == "dot":  # <P l, g> / sqrt(Q)
        projected = conv(features, block.project_features.weight)
        return (projected * query[:, :, None, None]).sum(1, keepdim=True) / QUERY**0.5
    if compatibility == "parametrised":  # <u, P l + g>
        return conv(conv(features, block.project_features.weight) + query[:, :, None, None], block.vector.weight)
    return conv(features, block.vector.weight, block.vector.bias)  # query_free: w . l + b


def reference_pooled(attention: torch.Tensor, features: torch.Tensor, normalisation: str) -> torch.Tensor:
    weighted = attention * features
    return weighted.sum(dim=(2, 3)) if normalisation == "softmax" else weighted.mean(dim=(2, 3))


@pytest.mark.parametrize("compatibility", ["additive", "dot", "parametrised", "query_free"])
@pytest.mark.parametrize("normalisation", ["softmax", "sigmoid"])
def test_blocks_compute_the_formulas_and_their_gradients(compatibility, normalisation):
    torch.manual_seed(0)
    block = build_attention_block(compatibility, CHANNELS, QUERY, ALIGNMENT, normalisation)
    features = torch.randn(3, CHANNELS, 5, 7, requires_grad=True)
    query = torch.randn(3, QUERY, requires_grad=True)

    pooled, attention = block(features, query)
    scores = reference_scores(block, features, query, compatibility).flatten(2)
    expected_map = (scores.softmax(-1) if normalisation == "softmax" else scores.sigmoid()).view(3, 1, 5, 7)
    expected_pooled = reference_pooled(expected_map, features, normalisation)
    torch.testing.assert_close(block.score(features, query), scores.view(3, 1, 5, 7))
    torch.testing.assert_close(attention, expected_map)
    torch.testing.assert_close(pooled, expected_pooled)

    weights = torch.randn_like(pooled)
    got = torch.autograd.grad((pooled * weights).sum(), [features, query, *block.parameters()], allow_unused=True)
    want = torch.autograd.grad(
        (expected_pooled * weights).sum(), [features, query, *block.parameters()], allow_unused=True
    )
    for mine, theirs in zip(got, want):
        if theirs is None:
            assert mine is None
        else:
            torch.testing.assert_close(mine, theirs)


def test_channels_last_features_give_the_same_pooling():
    torch.manual_seed(0)
    block = build_attention_block("additive", CHANNELS, QUERY, ALIGNMENT, "softmax")
    features, query = torch.randn(2, CHANNELS, 4, 6), torch.randn(2, QUERY)
    pooled, attention = block(features, query)
    pooled_cl, attention_cl = block(features.contiguous(memory_format=torch.channels_last), query)
    torch.testing.assert_close(pooled_cl, pooled)
    torch.testing.assert_close(attention_cl, attention)
