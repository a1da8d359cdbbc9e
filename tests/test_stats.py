"""Statistics of repeated runs, checked against values worked out by hand."""

import math

import pytest

from universal_attention.transfer.stats import mean_ci, paired_bootstrap, ratio_bootstrap, sample_std


def test_sample_std_divides_by_n_minus_one():
    assert sample_std([0.2, 0.4, 0.6]) == pytest.approx(0.2)  # population std would be 0.163
    assert sample_std([0.7]) == 0.0


def test_mean_ci_is_the_t_interval():
    mean, std, (low, high) = mean_ci([0.2, 0.4, 0.6])
    half = 4.302653 * 0.2 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) = 4.302653
    assert (mean, std) == (pytest.approx(0.4), pytest.approx(0.2))
    assert (low, high) == (pytest.approx(0.4 - half, abs=1e-6), pytest.approx(0.4 + half, abs=1e-6))


def test_a_single_run_has_no_interval():
    mean, std, (low, high) = mean_ci([0.5])
    assert (mean, std) == (0.5, 0.0) and math.isnan(low) and math.isnan(high)


def test_paired_bootstrap_of_two_pairs_spans_the_two_differences():
    # Differences 0.1 and 0.3: resampled means are 0.1 (1/4), 0.2 (1/2), 0.3 (1/4), so the 2.5 % and
    # 97.5 % percentiles are the two differences themselves.
    delta, (low, high) = paired_bootstrap([0.6, 0.8], [0.5, 0.5])
    assert delta == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(0.1), pytest.approx(0.3))


def test_paired_bootstrap_of_equal_differences_is_a_point():
    delta, (low, high) = paired_bootstrap([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert (delta, low, high) == (pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1))


def test_paired_bootstrap_pairs_values_rather_than_pooling_them():
    # Large spread between pairs, none within: unpaired intervals would straddle 0, the paired one does not.
    first, second = [0.9, 0.5, 0.1, 0.7], [0.85, 0.45, 0.05, 0.65]
    delta, (low, high) = paired_bootstrap(first, second)
    assert (delta, low, high) == (pytest.approx(0.05), pytest.approx(0.05), pytest.approx(0.05))


def test_paired_bootstrap_needs_equal_lengths():
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap([0.1, 0.2], [0.1])


def test_ratio_of_paired_differences():
    # learned - uniform = 0.1 in every pair, oracle - uniform = 0.4: a quarter of the oracle's gain.
    fraction, (low, high) = ratio_bootstrap(([0.35, 0.45], [0.25, 0.35]), ([0.65, 0.75], [0.25, 0.35]))
    assert (fraction, low, high) == (pytest.approx(0.25), pytest.approx(0.25), pytest.approx(0.25))


def test_a_ratio_over_no_gain_is_undefined():
    fraction, (low, high) = ratio_bootstrap(([0.3, 0.4], [0.3, 0.3]), ([0.3, 0.3], [0.3, 0.3]))
    assert math.isnan(fraction) and math.isnan(low) and math.isnan(high)


PAIRED = (
    [0.3137, 0.2812, 0.3519, 0.4046, 0.2893, 0.3301, 0.3768, 0.3025, 0.3634],
    [0.2741, 0.2958, 0.3012, 0.3287, 0.2779, 0.3046, 0.3105, 0.2913, 0.2994],
)


def test_mean_ci_is_scipy_s_t_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    values = PAIRED[0]
    _, _, interval = mean_ci(values)
    expected = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / len(values), scale=scipy_stats.sem(values)
    )
    assert interval == pytest.approx(expected, abs=1e-9)


def test_paired_bootstrap_agrees_with_scipy_s_percentile_bootstrap():
    """The same interval as scipy.stats.bootstrap (paired, percentile) within the Monte-Carlo error of 10,000
    resamples; the library keeps its own torch-seeded resampling so that an interval never changes with the
    installed scipy release."""
    scipy_stats = pytest.importorskip("scipy.stats")
    first, second = PAIRED
    delta, (low, high) = paired_bootstrap(first, second)
    reference = scipy_stats.bootstrap(
        (first, second),
        lambda a, b, axis: (a - b).mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=10_000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    spread = max(high - low, 1e-9)
    assert delta == pytest.approx(sum(first) / 9 - sum(second) / 9, abs=1e-12)
    assert low == pytest.approx(reference.low, abs=0.02 * spread)
    assert high == pytest.approx(reference.high, abs=0.02 * spread)
