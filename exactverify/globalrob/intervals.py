"""Confidence intervals for Monte Carlo estimates of a probability.

Every interval here is exact (Clopper-Pearson, via :func:`scipy.stats.binomtest`), never a
normal approximation, because the interesting probabilities sit near 0 or 1 where the
normal approximation under-covers.

Three situations need care:

- **Unknown samples.** A sample whose local check timed out is neither a success nor a
  failure. :func:`widened_interval` counts unknowns as failures for the lower end and as
  successes for the upper end. The true success count ``K`` lies between ``certified`` and
  ``certified + unknown``, and the Clopper-Pearson bounds are monotone in the count, so the
  widened interval contains the interval for ``K`` and keeps its coverage.
- **Stopping early.** Looking at the interval after every batch and stopping once it is
  narrow is optional stopping; a fixed-level interval then under-covers. With
  :func:`look_confidence`, look ``k`` uses error ``alpha * 6 / (pi^2 k^2)``; these sum to
  ``alpha`` over all looks, so by the union bound the interval reported at whichever look
  stops covers with probability at least ``1 - alpha``.
- **Subsampling the unknowns.** Deciding a uniform random subsample of the unknowns gives
  an unbiased estimate (:func:`subsample_estimate`); its interval is a normal
  approximation of a stratified estimator and is labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binomtest, norm

from ..errors import InvalidInputError

#: Default two-sided confidence level of every reported interval.
DEFAULT_CONFIDENCE = 0.95


def _check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise InvalidInputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not (isinstance(value, int) or hasattr(value, "__index__")) or int(value) < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class Interval:
    """A two-sided interval ``[low, high]`` for a probability, with its confidence level."""

    low: float
    high: float
    confidence: float
    method: str

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def clopper_pearson(successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The exact two-sided binomial interval for ``successes`` out of ``trials``.

    With no trials the interval is [0, 1] (nothing is known)."""
    _check_counts(successes=successes, trials=trials)
    confidence = _check_confidence(confidence)
    if successes > trials:
        raise InvalidInputError(f"successes ({successes}) exceed trials ({trials})")
    if trials == 0:
        return Interval(0.0, 1.0, confidence, "clopper-pearson")
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(float(ci.low), float(ci.high), confidence, "clopper-pearson")


def widened_interval(certified: int, violated: int, unknown: int,
                     confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Interval for P(property holds) when ``unknown`` samples are undecided.

    The lower end is the Clopper-Pearson lower end with the unknowns counted as failures,
    the upper end the Clopper-Pearson upper end with them counted as successes."""
    _check_counts(certified=certified, violated=violated, unknown=unknown)
    trials = int(certified) + int(violated) + int(unknown)
    low = clopper_pearson(int(certified), trials, confidence).low
    high = clopper_pearson(int(certified) + int(unknown), trials, confidence).high
    return Interval(low, high, _check_confidence(confidence), "clopper-pearson, unknowns widen")


def look_confidence(confidence: float, look: int) -> float:
    """Confidence level for look ``look`` (1, 2, ...) of a sequential procedure.

    The error ``1 - confidence`` is spent as ``alpha * 6 / (pi^2 look^2)``; summed over all
    looks this is ``alpha``, so stopping at any look keeps the overall level."""
    confidence = _check_confidence(confidence)
    if not (isinstance(look, int) and look >= 1):
        raise InvalidInputError(f"look must be an integer >= 1, got {look!r}")
    alpha = 1.0 - confidence
    return 1.0 - alpha * 6.0 / (math.pi**2 * look**2)


@dataclass(frozen=True)
class SubsampleEstimate:
    """Estimate of P(property holds) after deciding a random subsample of the unknowns."""

    estimate: float
    low: float
    high: float
    checked: int
    robust_in_subsample: int
    unresolved_in_subsample: int
    method: str = "stratified estimate, normal approximation"


def subsample_estimate(certified: int, violated: int, unknown: int, checked: int, robust: int,
                       unresolved: int = 0, confidence: float = DEFAULT_CONFIDENCE) -> SubsampleEstimate:
    """Unbiased estimate ``(certified + unknown * q) / n`` where ``q`` is the robust fraction
    among ``checked`` unknowns drawn uniformly without replacement.

    Subsample members that stay unresolved count as robust for the high end and as not
    robust for the low end; the point estimate splits them evenly. The interval adds the
    binomial variance of the certified fraction and the (finite-population corrected)
    variance of ``q``; it is approximate, unlike :func:`widened_interval`."""
    _check_counts(certified=certified, violated=violated, unknown=unknown, checked=checked, robust=robust,
                  unresolved=unresolved)
    confidence = _check_confidence(confidence)
    n = int(certified) + int(violated) + int(unknown)
    if n == 0:
        raise InvalidInputError("no samples to estimate from")
    if checked > unknown or robust + unresolved > checked:
        raise InvalidInputError(f"inconsistent subsample: checked={checked}, robust={robust}, "
                                f"unresolved={unresolved}, unknown={unknown}")
    if unknown == 0 or checked == 0:
        if unknown and checked == 0:
            wide = widened_interval(certified, violated, unknown, confidence)
            return SubsampleEstimate((certified + unknown / 2) / n, wide.low, wide.high, 0, 0, 0,
                                     "no subsample: widened Clopper-Pearson")
        cp = clopper_pearson(int(certified), n, confidence)
        return SubsampleEstimate(certified / n, cp.low, cp.high, 0, 0, 0, "clopper-pearson")
    z = float(norm.ppf(0.5 + confidence / 2))
    fpc = (unknown - checked) / max(unknown - 1, 1)

    def end(q: float, sign: float) -> float:
        value = (certified + unknown * q) / n
        var_q = q * (1 - q) / checked * fpc
        var = value * (1 - value) / n + (unknown / n) ** 2 * var_q
        return min(max(value + sign * z * math.sqrt(var), 0.0), 1.0)

    q_mid = (robust + unresolved / 2) / checked
    low = end(robust / checked, -1.0)
    high = end((robust + unresolved) / checked, +1.0)
    return SubsampleEstimate((certified + unknown * q_mid) / n, low, high, int(checked), int(robust),
                             int(unresolved))
