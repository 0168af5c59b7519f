"""Small helpers shared by the concrete backends (argument checks, term aggregation).

Kept apart from :mod:`encoders.backends.base` so the public interface stays narrow.
"""

from __future__ import annotations

import math

import numpy as np

from exactverify.errors import InvalidInputError

# Relative tolerance under which a reported objective and dual bound count as equal, used
# only to decide OPTIMAL vs FEASIBLE when the caller asked for a nonzero MIP gap.
GAP_CLOSED_RTOL = 1e-9

# Solve options every backend understands; backend-specific ones are listed per backend.
# ``progress`` is a callable taking a :class:`~encoders.backends.base.SolveProgress`.
COMMON_OPTIONS = frozenset({"gap", "feastol", "verbose", "progress"})


def check_solve_args(time_limit: float | None, threads: int) -> None:
    """Validate the arguments of :meth:`Backend.solve` (name the parameter on failure)."""
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)):
            raise InvalidInputError(f"time_limit must be a number of seconds or None, got {time_limit!r}")
        if not (math.isfinite(time_limit) and time_limit > 0):
            raise InvalidInputError(f"time_limit must be positive and finite, got {time_limit!r}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InvalidInputError(f"threads must be an integer >= 1, got {threads!r}")


def prepare_solve(backend, time_limit: float | None, threads: int, options: dict) -> tuple[dict, object | None]:
    """Shared start of every backend's ``_solve``: validated arguments, the backend's defaults
    merged with ``options``, and the INFEASIBLE answer when an all-cancelled row is violated
    (``backend._violated_empty`` names it), which no solver needs to be asked about."""
    from .base import SolveResult, Status

    check_solve_args(time_limit, threads)
    opts = {**backend._defaults, **check_options(dict(options), backend.OPTIONS, backend.name)}
    if backend._violated_empty is not None:
        return opts, SolveResult(Status.INFEASIBLE, f"{backend._violated_empty} violated", backend=backend.name)
    return opts, None


def check_options(options: dict, allowed: frozenset, backend: str) -> dict:
    """Reject unknown solve options and validate the common ones; returns ``options``."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidInputError(f"{backend}: unknown solve option(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("gap", "feastol"):
        value = options.get(key)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{backend}: option {key!r} must be a finite number >= 0, got {value!r}")
    if options.get("progress") is not None and not callable(options["progress"]):
        raise InvalidInputError(f"{backend}: option 'progress' must be a callable taking a SolveProgress, "
                                f"got {type(options['progress']).__name__}")
    if options.get("feastol") == 0:
        raise InvalidInputError(f"{backend}: option 'feastol' must be > 0")
    return options


def aggregate(index: np.ndarray, coef: np.ndarray) -> tuple[list[int], list[float]]:
    """Sum coefficients of repeated variables and drop zeros; returns plain lists.

    Solvers that set coefficients one at a time (``SetCoefficient``) would silently keep
    only the last of a repeated index, so every backend sees aggregated terms.
    """
    if index.size > 1 and np.unique(index).size != index.size:
        uniq, inverse = np.unique(index, return_inverse=True)
        summed = np.zeros(uniq.size, dtype=np.float64)
        np.add.at(summed, inverse, coef)
        keep = summed != 0.0
        return uniq[keep].tolist(), summed[keep].tolist()
    return index.tolist(), coef.tolist()


def check_indices(index: list[int], num_vars: int, what: str) -> None:
    """Raise when a term refers to a variable that does not exist."""
    if index and (min(index) < 0 or max(index) >= num_vars):
        raise InvalidInputError(f"{what} refers to a variable index outside [0, {num_vars})")


def empty_row_holds(sense: str, rhs: float) -> bool:
    """Whether ``0 sense rhs`` is true (a constraint left with no terms)."""
    if sense == "<=":
        return 0.0 <= rhs
    if sense == ">=":
        return 0.0 >= rhs
    return rhs == 0.0


def gap_closed(objective: float, bound: float) -> bool:
    """Objective and dual bound agree up to :data:`GAP_CLOSED_RTOL`."""
    return abs(objective - bound) <= GAP_CLOSED_RTOL * max(1.0, abs(objective))
