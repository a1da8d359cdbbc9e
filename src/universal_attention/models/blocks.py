"""Attention blocks of "Learn to Pay Attention" (Jetley et al. 2018).

One block per tap layer scores every location of the tap's feature map against a global query
(the *compatibility* function), normalises the scores over space, and pools the tap's features with
those weights. The compatibility functions are variants of one block, each filling in ``score``.

The 1x1 projections are stored as ``Conv2d`` weights (the checkpoint format) but applied as matrix products over
the ``[B, h*w, C]`` locations, and the pooling is one batched matrix product: on a CPU, a convolution with one
output channel and a broadcast multiply-and-sum cost several times their arithmetic. Where the compatibility is
linear in the features (dot, parametrised), the query side is folded into one vector per image first.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from .controls import oracle_map, shuffled_map, uniform_map

SATURATION_THRESHOLD = 2.0
"""Beyond ``|2|``, ``tanh`` passes less than 7 % of its gradient (``1 - tanh(2)^2 = 0.071``)."""
_HALF_SQRT2 = 1 / math.sqrt(2)


class AttentionBlock(nn.Module, ABC):
    """Base block: ``score`` (subclass hook) -> spatial normalisation -> weighted pooling.

    Args:
        channels: channels of the tapped feature map.
        query_size: size of the global query vector.
        alignment_size: hidden size of the additive compatibility function.
        normalisation: ``"softmax"`` (weights sum to 1 over space) or ``"sigmoid"`` (each location
            gated independently; pooled by a spatial mean, as in the paper).
    """

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__()
        self.normalisation = normalisation

    @abstractmethod
    def score(self, features: Tensor, query: Tensor) -> Tensor:
        """Compatibility scores ``[B, 1, h, w]`` of ``features [B, C, h, w]`` with ``query [B, Q]``."""

    def saturated_share(self, features: Tensor, query: Tensor) -> Tensor | None:
        """The share of the compatibility's ``tanh`` inputs beyond ``|SATURATION_THRESHOLD|``, where ``tanh`` is
        flat; ``None`` for a compatibility without ``tanh``."""
        return None

    def forward(
        self, features: Tensor, query: Tensor, control: str = "learned", masks: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(pooled [B, C], attention [B, 1, h, w])``.

        ``control`` replaces the learned map (see :mod:`universal_attention.models.controls`); ``oracle``
        needs the object ``masks`` ``[B, H, W]``. The returned attention is the map the features were pooled
        with.
        """
        if control == "uniform":
            attention = uniform_map(features, self.normalisation)
        elif control == "oracle":
            if masks is None:
                raise ModelError("oracle attention needs the images' object masks: pass masks [B, H, W]")
            attention = oracle_map(masks, features, self.normalisation)
        else:
            attention = self.attend(features, query)
            if control == "shuffled":
                attention = shuffled_map(attention)
        weights = attention.flatten(2).transpose(1, 2).to(features.dtype)  # [B, h*w, 1]
        pooled = torch.bmm(features.flatten(2), weights).squeeze(2)
        if self.normalisation != "softmax":  # gates: a spatial mean, as in the paper
            pooled = pooled / weights.shape[1]
        return pooled, attention

    def attend(self, features: Tensor, query: Tensor) -> Tensor:
        """The learned map ``[B, 1, h, w]``: scores normalised over space (softmax) or gated (sigmoid)."""
        batch, _, height, width = features.shape
        scores = self.score(features, query).float().view(batch, 1, height * width)
        if self.normalisation == "softmax":
            return F.softmax(scores, dim=-1).view(batch, 1, height, width)
        return torch.sigmoid(scores).view(batch, 1, height, width)


def locations(features: Tensor) -> Tensor:
    """``[B, C, h, w]`` features as ``[B, h*w, C]``: one row per location (a view where the layout allows)."""
    return features.flatten(2).transpose(1, 2)


def matrix(conv: nn.Conv2d) -> Tensor:
    """A 1x1 convolution's weight ``[out, in, 1, 1]`` as the matrix ``[out, in]``."""
    return conv.weight.flatten(1)


def as_map(scores: Tensor, features: Tensor) -> Tensor:
    """Per-location scores ``[B, h*w]`` (or ``[B, h*w, 1]``) as a map ``[B, 1, h, w]`` on ``features``' grid."""
    batch, _, height, width = features.shape
    return scores.reshape(batch, 1, height, width)


class AdditiveAttention(AttentionBlock):
    """``score = w . tanh(W_l l + W_g g)``: the original experiment's compatibility function, exactly."""

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__(channels, query_size, alignment_size, normalisation)
        self.project_features = nn.Conv2d(channels, alignment_size, kernel_size=1, bias=False)
        self.project_query = nn.Linear(query_size, alignment_size)
        self.vector = nn.Conv2d(alignment_size, 1, kernel_size=1, bias=False)

    def aligned(self, features: Tensor, query: Tensor) -> Tensor:
        """The ``tanh`` inputs ``[B, h*w, alignment_size]``."""
        return F.linear(locations(features), matrix(self.project_features)) + self.project_query(query)[:, None]

    def score(self, features: Tensor, query: Tensor) -> Tensor:
        return as_map(F.linear(torch.tanh(self.aligned(features, query)), matrix(self.vector)), features)

    def saturated_share(self, features: Tensor, query: Tensor) -> Tensor:
        return (self.aligned(features, query).abs() > SATURATION_THRESHOLD).float().mean()


class NormalisedAdditiveAttention(AdditiveAttention):
    """``score = w . tanh((LN(W_l l) + LN(W_g g)) / sqrt 2)``: the additive form with both projections layer-normed
    over the alignment channels, so that the ``tanh`` inputs start near unit scale whatever the trunk's feature
    and query magnitudes (the original's form starts with most of them beyond ``|2|``)."""

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__(channels, query_size, alignment_size, normalisation)
        self.norm_features = nn.LayerNorm(alignment_size)
        self.norm_query = nn.LayerNorm(alignment_size)

    def aligned(self, features: Tensor, query: Tensor) -> Tensor:
        projected = self.norm_features(F.linear(locations(features), matrix(self.project_features)))
        return (projected + self.norm_query(self.project_query(query))[:, None]) * _HALF_SQRT2


class DotAttention(AttentionBlock):
    """``score = <P l, g> / sqrt(Q)``: features projected to the query size, scaled dot product."""

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__(channels, query_size, alignment_size, normalisation)
        self.project_features = nn.Conv2d(channels, query_size, kernel_size=1, bias=False)
        self.scale = 1.0 / math.sqrt(query_size)

    def score(self, features: Tensor, query: Tensor) -> Tensor:
        folded = query @ matrix(self.project_features) * self.scale  # <P l, g> = <l, P^T g>: [B, C]
        return as_map(torch.bmm(locations(features), folded.unsqueeze(2).to(features.dtype)), features)


class ParametrisedAttention(AttentionBlock):
    """``score = <u, P l + g>``: LTPA's parametrised compatibility with a learned vector ``u``."""

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__(channels, query_size, alignment_size, normalisation)
        self.project_features = nn.Conv2d(channels, query_size, kernel_size=1, bias=False)
        self.vector = nn.Conv2d(query_size, 1, kernel_size=1, bias=False)

    def score(self, features: Tensor, query: Tensor) -> Tensor:
        folded = matrix(self.vector) @ matrix(self.project_features)  # <u, P l + g> = <P^T u, l> + <u, g>
        offset = query @ matrix(self.vector).t()  # [B, 1]
        return as_map(F.linear(locations(features), folded) + offset[:, None], features)


class QueryFreeAttention(AttentionBlock):
    """``score = w . l``: a 1x1 convolution per location, no global query."""

    def __init__(self, channels: int, query_size: int, alignment_size: int, normalisation: str) -> None:
        super().__init__(channels, query_size, alignment_size, normalisation)
        self.vector = nn.Conv2d(channels, 1, kernel_size=1)

    def score(self, features: Tensor, query: Tensor) -> Tensor:
        return as_map(F.linear(locations(features), matrix(self.vector), self.vector.bias), features)


COMPATIBILITY: dict[str, type[AttentionBlock]] = {
    "additive": AdditiveAttention,
    "additive_norm": NormalisedAdditiveAttention,
    "dot": DotAttention,
    "parametrised": ParametrisedAttention,
    "query_free": QueryFreeAttention,
}


def build_attention_block(
    compatibility: str, channels: int, query_size: int, alignment_size: int, normalisation: str
) -> AttentionBlock:
    """Build the attention block named by ``compatibility`` (a key of :data:`COMPATIBILITY`)."""
    return COMPATIBILITY[compatibility](channels, query_size, alignment_size, normalisation)
