"""Build and solve the z3 model of one query (see the package docstring)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from encoders.backends.base import SolveResult, Status
from encoders.milp.formulations import unsupported
from encoders.milp.linear import affine_rows
from encoders.milp.network import check_bounds, flat_bounds
from exactverify.bounds import BoundsResult
from exactverify.bounds import bounds as compute_bounds
from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.ir import (
    AvgPool2d,
    Clamp,
    Conv2d,
    Dense,
    ElementwiseAffine,
    Flatten,
    LeakyReLU,
    MaxPool2d,
    Network,
    ReLU,
    Reshape,
)
from exactverify.regions import Region
from exactverify.specs import OutputSpec

#: A unit counts as stable only when its float bounds clear 0 (or a clamp threshold) by this much.
PHASE_MARGIN = 1e-9


@dataclass
class SmtEncoding:
    """A z3 solver holding one query; ``input``/``output`` are z3 terms of the flat values."""

    solver: Any  # z3.Solver
    input: list
    output: list
    distortion: Any | None  # z3 term equal to ||x - center|| in the region's norm (None for a box)
    network: Network | None = None
    model: Any | None = field(default=None, repr=False)  # z3 model of the last sat answer


class _Builder:
    """Exact rationals and fresh names for one encoding."""

    def __init__(self, z3) -> None:
        self.z3 = z3
        self._cache: dict[float, Any] = {}

    def q(self, value: float):
        """The exact rational of a float64 as a z3 real constant."""
        value = float(value)
        term = self._cache.get(value)
        if term is None:
            frac = Fraction(value)
            term = self.z3.RealVal(f"{frac.numerator}/{frac.denominator}")
            self._cache[value] = term
        return term

    def relu(self, term):
        return self.z3.If(term > 0, term, self.q(0.0))

    def max2(self, a, b):
        """``max(a, b) = ReLU(a - b) + b`` (the seed's form)."""
        return self.relu(a - b) + b

    def abs(self, term):
        """``|d| = ReLU(2 d) - d`` (the seed's form)."""
        return self.relu(2 * term) - term


def _check(network: Network, region: Region, spec: OutputSpec, eps_override) -> float | None:
    if not isinstance(network, Network):
        raise InvalidInputError(f"network must be an exactverify Network, got {type(network).__name__}")
    if not isinstance(region, Region) or region.batch_size != 1:
        raise InvalidInputError("region must be an exactverify Region holding a batch of one region")
    if region.shape != network.input_shape:
        raise ShapeMismatchError(f"region has sample shape {region.shape}, network input is {network.input_shape}")
    if not isinstance(spec, OutputSpec) or spec.num_outputs != network.output_size:
        raise InvalidInputError(f"spec must be an OutputSpec over the network's {network.output_size} outputs")
    if eps_override is None:
        return None
    if region.norm == "box":
        raise InvalidInputError("eps_override needs a ball region (linf or l1); got a box")
    eps = float(eps_override)
    if not (math.isfinite(eps) and 0.0 <= eps <= float(region.eps[0])):
        raise InvalidInputError(
            f"eps_override must lie in [0, region.eps={float(region.eps[0])}] (bounds are for the region), got {eps}"
        )
    return eps


def _region(b: _Builder, solver, region: Region, eps_override: float | None):
    z3 = b.z3
    lower = region.lower[0].reshape(-1).tolist()
    upper = region.upper[0].reshape(-1).tolist()
    x = [z3.Real(f"x{i}") for i in range(len(lower))]
    for xi, lo, up in zip(x, lower, upper, strict=True):
        solver.add(xi >= b.q(lo), xi <= b.q(up))
    if region.norm == "box":
        return x, None
    center = region.center[0].reshape(-1).tolist()
    eps = float(region.eps[0]) if eps_override is None else eps_override
    diffs = []
    for xi, ci, lo, up in zip(x, center, lower, upper, strict=True):
        d = xi - b.q(ci)
        if lo >= ci:  # sign of x_i - c_i known from the box (exact comparison of floats)
            diffs.append(d)
        elif up <= ci:
            diffs.append(-d)
        else:
            diffs.append(b.abs(d))
    if region.norm == "linf":
        distortion = diffs[0]
        for term in diffs[1:]:
            distortion = b.max2(term, distortion)
        if eps_override is not None:
            for xi, ci in zip(x, center, strict=True):
                solver.add(xi - b.q(ci) <= b.q(eps), b.q(ci) - xi <= b.q(eps))
        return x, distortion
    distortion = z3.Sum(diffs) if len(diffs) > 1 else diffs[0]
    solver.add(distortion <= b.q(eps))
    return x, distortion


def _layers(b: _Builder, solver, network: Network, bounds: BoundsResult, x: list) -> list:
    z3 = b.z3
    for i, layer in enumerate(network.layers):
        low, up = flat_bounds(bounds, i)
        if isinstance(layer, (Dense, Conv2d, AvgPool2d, ElementwiseAffine)):
            out = []
            for j, (index, coef, const) in enumerate(affine_rows(layer, network.shapes[i])):
                v = z3.Real(f"a{i}_{j}")
                terms = [b.q(c) * x[k] for k, c in zip(index.tolist(), coef.tolist(), strict=True)]
                solver.add(v == z3.Sum(*terms, b.q(const)) if terms else v == b.q(const))
                out.append(v)
            x = out
        elif isinstance(layer, (Flatten, Reshape)):
            continue
        elif isinstance(layer, (ReLU, LeakyReLU)):
            slope = b.q(layer.negative_slope if isinstance(layer, LeakyReLU) else 0.0)
            out = []
            for k, xk in enumerate(x):
                if low[k] >= PHASE_MARGIN:
                    out.append(xk)
                elif up[k] <= -PHASE_MARGIN:
                    out.append(slope * xk)
                else:
                    v = z3.Real(f"r{i}_{k}")
                    solver.add(v == z3.If(xk > 0, xk, slope * xk))
                    out.append(v)
            x = out
        elif isinstance(layer, Clamp):
            lo_q, hi_q = b.q(layer.low), b.q(layer.high)
            out = []
            for k, xk in enumerate(x):
                if up[k] <= layer.low - PHASE_MARGIN:
                    out.append(lo_q)
                elif low[k] >= layer.high + PHASE_MARGIN:
                    out.append(hi_q)
                elif low[k] >= layer.low + PHASE_MARGIN and up[k] <= layer.high - PHASE_MARGIN:
                    out.append(xk)
                else:
                    v = z3.Real(f"c{i}_{k}")
                    solver.add(v == z3.If(xk < lo_q, lo_q, z3.If(xk > hi_q, hi_q, xk)))
                    out.append(v)
            x = out
        elif isinstance(layer, MaxPool2d):
            out = []
            for j, window in enumerate(layer.window_indices(network.shapes[i])):
                cand = window[window >= 0]
                cand = cand[up[cand] >= low[cand].max() - PHASE_MARGIN]  # drop candidates that never win
                m = x[int(cand[0])]
                for c in cand[1:]:
                    m = b.max2(x[int(c)], m)
                v = z3.Real(f"mp{i}_{j}")
                solver.add(v == m)
                out.append(v)
            x = out
        else:
            raise unsupported(layer, i, "the exact SMT encoder")
    return x


def encode_smt(network: Network, region: Region, spec: OutputSpec, bounds: BoundsResult | None = None, *,
               eps_override: float | None = None) -> SmtEncoding:
    """A z3 solver asserting "x in ``region`` and ``network(x)`` in ``spec``" over exact rationals.

    ``bounds`` (a batch of one, sound for ``region``) only fix stable phases; interval
    bounds are computed when omitted. ``eps_override`` shrinks a ball's radius to a value
    in ``[0, region.eps]`` without recomputing bounds.
    """
    eps = _check(network, region, spec, eps_override)
    for i, layer in enumerate(network.layers):
        if not layer.piecewise_linear:
            raise unsupported(layer, i, "the exact SMT encoder")
    if bounds is None:
        bounds = compute_bounds(network, region, method="interval")
    check_bounds(network, bounds)
    import z3  # lazily: only SMT users pay for it

    b = _Builder(z3)
    solver = z3.SolverFor("QF_LRA")
    x, distortion = _region(b, solver, region, eps)
    y = _layers(b, solver, network, bounds, x)
    disjuncts = []
    for conj in spec.disjuncts:
        rows = []
        for A_r, b_r in zip(conj.A, conj.b, strict=True):
            terms = [b.q(a) * y[k] for k, a in enumerate(A_r.tolist()) if a != 0.0]
            rows.append((z3.Sum(terms) if terms else b.q(0.0)) <= b.q(b_r))
        disjuncts.append(z3.And(rows) if rows else z3.BoolVal(True))
    solver.add(z3.Or(disjuncts) if len(disjuncts) > 1 else disjuncts[0])
    return SmtEncoding(solver, x, y, distortion, network)


def _as_float(model, term) -> float:
    value = model.eval(term, model_completion=True)
    frac = value.as_fraction()
    return float(Fraction(frac.numerator, frac.denominator))


def solve_smt(encoding: SmtEncoding, time_limit: float | None = None) -> SolveResult:
    """Check the encoding; on sat, ``values`` is the float input point followed by the output point.

    The exact z3 model is kept in ``encoding.model``. ``unknown`` maps to TIMEOUT when
    z3 reports a timeout or cancellation, else to ERROR (reason in ``raw_status``).
    """
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise InvalidInputError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    import z3

    solver = encoding.solver
    if time_limit is not None:
        solver.set("timeout", max(1, int(math.ceil(time_limit * 1000))))
    start = time.perf_counter()
    answer = solver.check()
    seconds = time.perf_counter() - start
    if answer == z3.sat:
        model = solver.model()
        encoding.model = model
        values = np.array([_as_float(model, t) for t in [*encoding.input, *encoding.output]])
        return SolveResult(Status.OPTIMAL, "sat", values=values, seconds=seconds, backend="z3-smt")
    if answer == z3.unsat:
        return SolveResult(Status.INFEASIBLE, "unsat", seconds=seconds, backend="z3-smt")
    reason = solver.reason_unknown()
    status = Status.TIMEOUT if ("timeout" in reason or "canceled" in reason) else Status.ERROR
    return SolveResult(status, f"unknown: {reason}", seconds=seconds, backend="z3-smt")
