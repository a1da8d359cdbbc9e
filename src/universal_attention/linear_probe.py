"""A linear probe that is solved, not trained: L2-regularised multinomial logistic regression on frozen features.

Features are standardised with the training shots' mean and standard deviation; the weights minimise the mean
cross-entropy plus ``l2 / 2 * |W|^2`` and are found by L-BFGS (float64) until the largest gradient entry is
below :data:`TOLERANCE`, so a probe's score says what the features hold, not how long an optimiser ran. ``l2`` is picked from :data:`L2_GRID` by stratified
k-fold cross-validation on the training shots (held-out cross-entropy); with a single shot per class there is
nothing to hold out and :data:`DEFAULT_L2` is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
DEFAULT_L2 = 1e-1
MAX_FOLDS = 5
MAX_ITERATIONS = 1000
TOLERANCE = 1e-6


@dataclass
class LinearProbe:
    """A fitted probe: ``logits = standardise(features) @ weight.T + bias``.

    Attributes:
        mean, std: the standardisation, from the training features.
        weight: ``[classes, D]``; bias: ``[classes]``.
        l2: the regularisation used; iterations: L-BFGS iterations of the final fit.
    """

    mean: Tensor
    std: Tensor
    weight: Tensor
    bias: Tensor
    l2: float
    iterations: int

    def logits(self, features: Tensor) -> Tensor:
        """Class scores ``[N, classes]`` for raw features ``[N, D]``."""
        standard = (features.double() - self.mean) / self.std
        return (standard @ self.weight.T + self.bias).float()


def _solve(features: Tensor, labels: Tensor, num_classes: int, l2: float,
           start: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, int]:
    """Minimise mean cross-entropy + l2/2 |W|^2 over ``features`` (float64); ``start`` is a ``(weight,
    bias)`` pair from a previous solve to continue from. Returns ``(weight, bias, iterations)``."""
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64) if start is None else start[0].clone()
    bias = torch.zeros(num_classes, dtype=torch.float64) if start is None else start[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=MAX_ITERATIONS, tolerance_grad=TOLERANCE,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach(), int(optimizer.state[weight].get("n_iter", 0))


def _span(features: Tensor) -> tuple[Tensor, Tensor]:
    """``(coordinates [N, r], basis [r, D])`` with ``features = coordinates @ basis`` and orthonormal basis rows.

    An L2-penalised linear model's weights lie in the span of its training features (the representer
    theorem), and an orthonormal basis keeps both the logits and the penalty: solving on the coordinates
    gives the same minimum as on the features, on r <= N columns instead of D.
    """
    left, singular, right = torch.linalg.svd(features, full_matrices=False)
    return left * singular, right


def _standardisation(features: Tensor) -> tuple[Tensor, Tensor]:
    mean = features.mean(dim=0)
    std = features.std(dim=0, correction=0) if len(features) > 1 else torch.ones_like(mean)
    return mean, std.clamp_min(1e-6)


def _folds(labels: Tensor, count: int) -> list[Tensor]:
    """Stratified folds: every class's members dealt round-robin (labels are already in a random order)."""
    position = torch.zeros_like(labels)
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        position[members] = torch.arange(len(members))
    return [torch.nonzero(position % count == fold).flatten() for fold in range(count)]


def choose_l2(features: Tensor, labels: Tensor, num_classes: int) -> float:
    """The grid value with the lowest held-out cross-entropy in stratified k-fold cross-validation.

    Each fold walks the grid from the strongest regularisation down, every solve starting from the last.
    """
    smallest_class = int(torch.bincount(labels, minlength=num_classes).min())
    count = min(MAX_FOLDS, smallest_class)
    if count < 2:
        return DEFAULT_L2
    losses = {l2: 0.0 for l2 in L2_GRID}
    for held in _folds(labels, count):
        kept = torch.ones(len(labels), dtype=torch.bool)
        kept[held] = False
        mean, std = _standardisation(features[kept])
        coordinates, basis = _span((features[kept] - mean) / std)
        held_coordinates = ((features[held] - mean) / std) @ basis.T
        solution = None
        for l2 in sorted(L2_GRID, reverse=True):
            *solution, _ = _solve(coordinates, labels[kept], num_classes, l2, solution)
            logits = held_coordinates @ solution[0].T + solution[1]
            losses[l2] += float(F.cross_entropy(logits, labels[held], reduction="sum"))
    return min(L2_GRID, key=lambda l2: (losses[l2], -l2))  # ties: the stronger regularisation


def fit_linear_probe(features: Tensor, labels: Tensor, num_classes: int, l2: float | None = None) -> LinearProbe:
    """Fit a probe on ``features [N, D]`` and ``labels [N]``; ``l2=None`` picks it by cross-validation."""
    features = features.double()
    chosen = choose_l2(features, labels, num_classes) if l2 is None else l2
    mean, std = _standardisation(features)
    coordinates, basis = _span((features - mean) / std)
    weight, bias, iterations = _solve(coordinates, labels, num_classes, chosen)
    return LinearProbe(mean, std, weight @ basis, bias, chosen, iterations)
