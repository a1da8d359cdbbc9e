"""Statistics of repeated transfer runs: sample spread, confidence intervals, paired differences.

- :func:`mean_ci`: the mean with a two-sided Student-t confidence interval (sample standard deviation,
  ``n - 1``), the right interval for a handful of seeds and shot draws.
- :func:`paired_bootstrap`: the mean of paired differences (same seed, same shot draw, same new head) with a
  percentile bootstrap interval, which assumes nothing about the shape of the differences.
- :func:`ratio_bootstrap`: a ratio of paired mean differences, e.g. the share of the oracle's gain that
  learned attention recovers, with a percentile bootstrap interval over the same pairs.

Every bootstrap is seeded, so the same runs always give the same interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch

CONFIDENCE = 0.95
RESAMPLES = 10_000


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1`` in the denominator); 0 for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """The ``probability`` quantile of Student's t distribution."""
    from scipy.stats import t  # imported here: scipy is slow to import and only this needs it

    return float(t.ppf(probability, degrees_of_freedom))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, tuple[float, float]]:
    """``(mean, sample std, (low, high))``: a t interval for the mean; a single value has ``(nan, nan)``."""
    mean = statistics.fmean(values)
    spread = sample_std(values)
    if len(values) < 2:
        return mean, spread, (math.nan, math.nan)
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * spread / math.sqrt(len(values))
    return mean, spread, (mean - half, mean + half)


def _resample_indices(count: int, resamples: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(count, (resamples, count), generator=generator)


def _percentiles(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    """Percentile interval; ``nan`` resamples (an undefined ratio) count against it, never silently dropped."""
    finite = values[torch.isfinite(values)]
    if len(finite) < (1 - (1 - confidence) / 2) * len(values):
        return math.nan, math.nan
    ordered = values.nan_to_num(nan=math.inf).sort().values
    tail = (1 - confidence) / 2
    low = ordered[math.floor(tail * (len(ordered) - 1))]
    high = ordered[math.ceil((1 - tail) * (len(ordered) - 1))]
    return float(low), float(high)


def paired_bootstrap(
    first: Sequence[float],
    second: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Mean of ``first[i] - second[i]`` and its percentile bootstrap interval (pairs resampled together).

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"paired values need equal, non-empty lengths (got {len(first)} and {len(second)})")
    differences = torch.tensor(first, dtype=torch.float64) - torch.tensor(second, dtype=torch.float64)
    means = differences[_resample_indices(len(differences), resamples, seed)].mean(dim=1)
    return float(differences.mean()), _percentiles(means, confidence)


def ratio_bootstrap(
    numerator: tuple[Sequence[float], Sequence[float]],
    denominator: tuple[Sequence[float], Sequence[float]],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """``mean(a - b) / mean(c - d)`` over paired runs, with a percentile bootstrap interval.

    ``numerator = (a, b)`` and ``denominator = (c, d)`` hold one value per pair (all four the same length).
    A resample whose denominator is 0 has no ratio and widens the interval to ``nan`` when such resamples
    are more than the interval's tail; a denominator near 0 gives a wide interval, as it should.
    """
    a, b = (torch.tensor(v, dtype=torch.float64) for v in numerator)
    c, d = (torch.tensor(v, dtype=torch.float64) for v in denominator)
    if not len(a) == len(b) == len(c) == len(d) > 0:
        raise ValueError("a ratio of paired differences needs four equal, non-empty sequences")
    gain, scale = a - b, c - d
    index = _resample_indices(len(gain), resamples, seed)
    ratios = gain[index].mean(dim=1) / scale[index].mean(dim=1)
    ratios[~torch.isfinite(ratios)] = math.nan
    estimate = float(gain.mean() / scale.mean()) if float(scale.mean()) != 0 else math.nan
    return estimate, _percentiles(ratios, confidence)
