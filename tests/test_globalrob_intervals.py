"""Confidence intervals: exact values, coverage by simulation, widening, error spending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from exactverify import InvalidInputError
from exactverify.globalrob.intervals import (
    clopper_pearson,
    look_confidence,
    subsample_estimate,
    widened_interval,
)


def test_clopper_pearson_matches_the_beta_quantiles() -> None:
    k, n, alpha = 7, 40, 0.05
    interval = clopper_pearson(k, n, 0.95)
    assert interval.low == pytest.approx(beta.ppf(alpha / 2, k, n - k + 1), rel=1e-9)
    assert interval.high == pytest.approx(beta.ppf(1 - alpha / 2, k + 1, n - k), rel=1e-9)
    assert clopper_pearson(0, 10).low == 0.0 and clopper_pearson(10, 10).high == 1.0
    assert (clopper_pearson(0, 0).low, clopper_pearson(0, 0).high) == (0.0, 1.0)


@pytest.mark.parametrize("p", [0.02, 0.5, 0.97, 0.999])
def test_exact_coverage_is_at_least_nominal(p: float) -> None:
    """Coverage summed exactly over the binomial distribution (no simulation noise)."""
    n = 60
    covered = sum(binom.pmf(k, n, p) for k in range(n + 1) if clopper_pearson(k, n, 0.9).contains(p))
    assert covered >= 0.9


def test_widened_interval_covers_whatever_the_unknowns_were() -> None:
    """Unknowns are adversarially the robust ones (or not): the widened interval still covers."""
    rng = np.random.default_rng(1)
    p, n = 0.7, 80
    misses = 0
    for _ in range(300):
        robust = int(rng.binomial(n, p))
        unknown = int(rng.integers(0, 15))
        hidden = min(unknown, robust) if rng.random() < 0.5 else max(0, unknown - (n - robust))
        interval = widened_interval(robust - hidden, n - robust - (unknown - hidden), unknown, 0.9)
        misses += not interval.contains(p)
    assert misses / 300 <= 0.1
    plain = clopper_pearson(47, 80)  # one way the 5 unknowns could have resolved
    wide = widened_interval(45, 30, 5)
    assert wide.low < plain.low and wide.high > plain.high


def test_look_confidence_spends_at_most_alpha() -> None:
    spent = sum(1 - look_confidence(0.95, k) for k in range(1, 100000))
    assert spent <= 0.05 + 1e-12
    assert look_confidence(0.95, 1) == pytest.approx(1 - 0.05 * 6 / math.pi**2)


def test_subsample_estimate_is_the_stratified_mean() -> None:
    est = subsample_estimate(certified=60, violated=20, unknown=20, checked=10, robust=4)
    assert est.estimate == pytest.approx((60 + 20 * 0.4) / 100)
    assert est.low < est.estimate < est.high
    full = subsample_estimate(certified=60, violated=20, unknown=20, checked=20, robust=20)
    assert full.estimate == pytest.approx(0.8)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="confidence"):
        clopper_pearson(1, 2, 1.5)
    with pytest.raises(InvalidInputError, match="successes"):
        clopper_pearson(3, 2)
    with pytest.raises(InvalidInputError, match="certified"):
        widened_interval(-1, 2, 0)
    with pytest.raises(InvalidInputError, match="subsample"):
        subsample_estimate(1, 1, 2, checked=3, robust=1)
