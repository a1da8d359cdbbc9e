"""A linear probe that is solved, not trained: L2-regularised multinomial logistic regression on frozen features.

Features are standardised with the training shots' mean and standard deviation; the weights minimise the mean
cross-entropy plus ``l2 / 2 * |W|^2`` and are solved (float64; Newton's method, or L-BFGS for many classes and
shots) until the largest gradient entry is below :data:`TOLERANCE`, so a probe's score says what the features
hold, not how long an optimiser ran. Solving in the span of the training features (at most one dimension per
shot) keeps this cheap. ``l2`` is picked from :data:`L2_GRID` by stratified
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
NEWTON_ITERATIONS = 100
LBFGS_ITERATIONS = 2000
NEWTON_PARAMETERS = 2500
TOLERANCE = 1e-8
LBFGS_TOLERANCE = 1e-6


@dataclass
class LinearProbe:
    """A fitted probe: ``logits = standardise(features) @ weight.T + bias``.

    Attributes:
        mean, std: the standardisation, from the training features.
        weight: ``[classes, D]``; bias: ``[classes]``.
        l2: the regularisation used; iterations: solver iterations of the final fit.
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


def _solve(
    features: Tensor, labels: Tensor, num_classes: int, l2: float, start: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor, int]:
    """Minimise mean cross-entropy + l2/2 |W|^2 over ``features`` (float64); ``start`` is a ``(weight, bias)``
    pair from a previous solve to continue from. Returns ``(weight, bias, iterations)``.

    Newton's method for problems of up to :data:`NEWTON_PARAMETERS` unknowns (few-shot probes: a few dozen
    iterations even when the regularisation is weak, where first-order methods crawl), L-BFGS beyond.
    """
    if num_classes * (features.shape[1] + 1) <= NEWTON_PARAMETERS:
        return _solve_newton(features, labels, num_classes, l2, start)
    return _solve_lbfgs(features, labels, num_classes, l2, start)


def _solve_lbfgs(
    features: Tensor, labels: Tensor, num_classes: int, l2: float, start: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor, int]:
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64) if start is None else start[0].clone()
    bias = torch.zeros(num_classes, dtype=torch.float64) if start is None else start[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=LBFGS_ITERATIONS,
        tolerance_grad=LBFGS_TOLERANCE,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach(), int(optimizer.state[weight].get("n_iter", 0))


def _solve_newton(
    features: Tensor, labels: Tensor, num_classes: int, l2: float, start: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor, int]:
    """Newton steps with a backtracking (Armijo) line search on the convex, smooth objective."""
    count, width = features.shape
    design = torch.cat([features, torch.ones(count, 1, dtype=torch.float64)], dim=1)  # the bias as a last column
    targets = torch.nn.functional.one_hot(labels, num_classes).double()
    penalty = torch.full((num_classes, width + 1), l2, dtype=torch.float64)
    penalty[:, -1] = 0.0  # the bias is not penalised
    theta = torch.zeros(num_classes, width + 1, dtype=torch.float64)
    if start is not None:
        theta[:, :-1], theta[:, -1] = start

    def objective(values: Tensor) -> Tensor:
        logits = design @ values.T
        return F.cross_entropy(logits, labels) + 0.5 * (penalty * values.pow(2)).sum()

    iterations = 0
    loss = objective(theta)
    for iterations in range(1, NEWTON_ITERATIONS + 1):  # noqa: B007  # the count is read after the loop
        probabilities = torch.softmax(design @ theta.T, dim=1)
        gradient = (probabilities - targets).T @ design / count + penalty * theta
        if float(gradient.abs().max()) < TOLERANCE:
            break
        curvature = torch.diag_embed(probabilities) - probabilities[:, :, None] * probabilities[:, None, :]
        weighted = curvature.reshape(count, -1, 1) * design[:, None, :]  # [N, C*C, P]
        hessian = (design.T @ weighted.reshape(count, -1)).view(width + 1, num_classes, num_classes, width + 1)
        hessian = hessian.permute(1, 0, 2, 3).reshape(theta.numel(), -1) / count  # rows (c, p), columns (d, q)
        hessian += torch.diag(penalty.flatten() + 1e-10)  # the softmax is flat along "add a constant to all"
        step = -torch.linalg.solve(hessian, gradient.flatten()).view_as(theta)
        slope, size = float((gradient * step).sum()), 1.0
        while True:  # backtracking (Armijo) line search
            candidate = objective(theta + size * step)
            if float(candidate) <= float(loss) + 1e-4 * size * slope or size < 1e-10:
                break
            size /= 2
        theta, loss = theta + size * step, candidate
    return theta[:, :-1].clone(), theta[:, -1].clone(), iterations


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
        solution: tuple[Tensor, Tensor] | None = None
        for l2 in sorted(L2_GRID, reverse=True):
            weight, bias, _ = _solve(coordinates, labels[kept], num_classes, l2, solution)
            solution = (weight, bias)
            logits = held_coordinates @ weight.T + bias
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
