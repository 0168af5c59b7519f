"""z3 backend: exact rational arithmetic, for cross-checking the MILP solvers.

Continuous variables are z3 ``Real``s, integer ones ``Int``s; bounds are constraints.
Every float coefficient enters as the exact rational it denotes (``Fraction(0.1)``, not
1/10), so z3 decides exactly the model the float64 data describe. Without objective
a ``z3.Solver`` decides feasibility; with one, ``z3.Optimize``. z3 proves no dual bound,
so ``bound`` is the objective when optimal and ``None`` otherwise. When a timeout
interrupts ``Optimize``, the last model it holds is returned as FEASIBLE only after
every constraint was re-checked on it exactly. ``threads`` is accepted and ignored.

Solve options ``gap``, ``feastol``, ``verbose`` and ``progress`` are accepted for interface
uniformity and ignored: z3 is exact, always proves optimality, and has no per-query log switch
or in-solve callback.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np

from exactverify.errors import SolverError

from ._common import COMMON_OPTIONS, aggregate, check_indices, check_options, empty_row_holds, prepare_solve
from .base import Backend, SolveResult, Status

try:
    import z3
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise SolverError("the 'z3' backend needs the z3-solver package (pip install z3-solver)") from exc


def _to_float(value) -> float:
    """Exact z3 numeral -> nearest float (rationals converted exactly first)."""
    if z3.is_int_value(value):
        return float(value.as_long())
    if z3.is_rational_value(value):
        return float(Fraction(value.numerator_as_long(), value.denominator_as_long()))
    if z3.is_algebraic_value(value):  # pragma: no cover - cannot arise from linear models
        return float(Fraction(value.approx(20).as_fraction()))
    raise SolverError(f"z3 returned a non-numeric value {value}")


class Z3Backend(Backend):
    """One z3 model; ``defaults`` are default solve options."""

    name = "z3"
    OPTIONS = COMMON_OPTIONS

    def __init__(self, **defaults) -> None:
        super().__init__()
        self._defaults = check_options(dict(defaults), self.OPTIONS, self.name)
        self._ctx = z3.Context()
        self._vars: list = []
        self._constraints: list = []
        self._objective = None
        self._minimize = True
        self._violated_empty: str | None = None

    # -- building -------------------------------------------------------------
    def _new_var(self, lb: float, ub: float, integer: bool, name: str) -> None:
        ctx = self._ctx
        var = z3.Int(name, ctx) if integer else z3.Real(name, ctx)
        if integer:
            lb, ub = math.ceil(lb) if math.isfinite(lb) else lb, math.floor(ub) if math.isfinite(ub) else ub
            if lb > ub:
                self._violated_empty = self._violated_empty or f"bounds of integer variable {name}"
        if math.isfinite(lb):
            self._constraints.append(var >= self._num(lb, integer))
        if math.isfinite(ub):
            self._constraints.append(var <= self._num(ub, integer))
        self._vars.append(var)

    def _num(self, value: float, integer: bool = False):
        if integer:
            return z3.IntVal(int(value), self._ctx)
        frac = Fraction(value)
        return z3.Q(frac.numerator, frac.denominator, self._ctx)

    def _linear(self, index: np.ndarray, coef: np.ndarray, what: str):
        idx, cf = aggregate(index, coef)
        check_indices(idx, self.num_vars, what)
        variables = self._vars
        return [self._num(c) * variables[i] for i, c in zip(idx, cf, strict=True)]

    def _add_constraint(self, index: np.ndarray, coef: np.ndarray, sense: str, rhs: float, name: str) -> None:
        terms = self._linear(index, coef, f"constraint {name!r}")
        if not terms:
            if not empty_row_holds(sense, rhs) and self._violated_empty is None:
                self._violated_empty = f"empty constraint {name or '<unnamed>'}"
            return
        lhs = z3.Sum(terms) if len(terms) > 1 else terms[0]
        right = self._num(rhs)
        self._constraints.append(lhs <= right if sense == "<=" else lhs >= right if sense == ">=" else lhs == right)

    def _set_objective(self, index: np.ndarray, coef: np.ndarray, constant: float, minimize: bool) -> None:
        terms = self._linear(index, coef, "objective")
        if not terms and not constant:
            self._objective = None
            return
        self._objective = z3.Sum(terms + [self._num(constant)])
        self._minimize = minimize

    # -- solving --------------------------------------------------------------
    def _solve(self, time_limit: float | None, threads: int, options: dict) -> SolveResult:
        _, early = prepare_solve(self, time_limit, threads, options)
        if early is not None:
            return early
        start = time.perf_counter()
        engine = z3.Optimize(ctx=self._ctx) if self._objective is not None else z3.Solver(ctx=self._ctx)
        if time_limit is not None:
            engine.set("timeout", max(1, int(math.ceil(time_limit * 1000))))
        engine.add(*self._constraints)
        handle = None
        if self._objective is not None:
            handle = engine.minimize(self._objective) if self._minimize else engine.maximize(self._objective)
        try:
            answer = engine.check()
        except z3.Z3Exception as exc:
            return SolveResult(Status.ERROR, f"exception: {exc}", seconds=time.perf_counter() - start,
                               backend=self.name)
        seconds = time.perf_counter() - start
        if answer == z3.unsat:
            return SolveResult(Status.INFEASIBLE, "unsat", seconds=seconds, backend=self.name)
        if answer == z3.sat:
            return self._sat_result(engine, handle, seconds)
        return self._unknown_result(engine, seconds)

    def _sat_result(self, engine, handle, seconds: float) -> SolveResult:
        model = engine.model()
        values = self._values(model)
        if handle is None:
            return SolveResult(Status.OPTIMAL, "sat", objective=0.0, bound=0.0, values=values,
                               seconds=seconds, backend=self.name)
        optimum = handle.value()
        if not (z3.is_int_value(optimum) or z3.is_rational_value(optimum)):
            # z3 writes an unbounded optimum as a term in oo (and never uses epsilon here:
            # every constraint is non-strict).
            status = Status.UNBOUNDED if "oo" in str(optimum) else Status.ERROR
            return SolveResult(status, f"sat, optimum {optimum}", values=values, seconds=seconds,
                               backend=self.name)
        objective = _to_float(optimum)
        return SolveResult(Status.OPTIMAL, "sat", objective=objective, bound=objective, values=values,
                           seconds=seconds, backend=self.name)

    def _unknown_result(self, engine, seconds: float) -> SolveResult:
        reason = engine.reason_unknown()
        raw = f"unknown: {reason}"
        timed_out = "timeout" in reason or "canceled" in reason
        if self._objective is not None:
            try:
                model = engine.model()
            except z3.Z3Exception:
                model = None
            if model is not None and self._satisfies(model):
                objective = _to_float(model.eval(self._objective, model_completion=True))
                return SolveResult(Status.FEASIBLE, raw, objective=objective, values=self._values(model),
                                   seconds=seconds, backend=self.name)
        return SolveResult(Status.TIMEOUT if timed_out else Status.ERROR, raw, seconds=seconds, backend=self.name)

    def _satisfies(self, model) -> bool:
        """Every constraint (bounds included) evaluates to true under ``model``, exactly."""
        return all(z3.is_true(model.eval(c, model_completion=True)) for c in self._constraints)

    def _values(self, model) -> np.ndarray:
        return np.array([_to_float(model.eval(v, model_completion=True)) for v in self._vars], dtype=np.float64)
