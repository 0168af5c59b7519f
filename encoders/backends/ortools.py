"""OR-Tools ``pywraplp`` backend, with the MILP engine chosen by name.

Default engine: ``SCIP`` with its aggregation separator off (:data:`DEFAULT_ENGINE_PARAMS`, the
same tuning as :mod:`encoders.backends.scip`), chosen by ``benchmarks/backend_choice.py``
(numbers in ``benchmarks/results/backend_choice.md``): on ReLU big-M MILPs it proved the most
optima, used the least CPU, agreed with every other route, and keeps its incumbent at a time
limit. ``HIGHS`` (an independent code base: the better second opinion) was next on small models
but through pywraplp returns no point at all when the time limit strikes (status code 99).
``CBC`` was slower, overran a 20 s limit by 10 s, and has been seen to claim false optima: do not
trust its verdicts without a second opinion. ``CP_SAT`` is refused: it rounds continuous
variables to a scaled integer grid, which is not exact for our models. HiGHS prints a one-line
banner on stdout per solve.

Solve options: ``gap`` (relative MIP gap; default 0, whereas pywraplp's own default is 1e-4),
``feastol`` (primal tolerance, engine-dependent support), ``verbose``, ``params`` (engine
parameters as text, e.g. ``"separating/aggregation/freq = -1"`` for SCIP). ``progress`` is
accepted and never called: pywraplp has no callback for in-solve reports.

pywraplp maps "infeasible or unbounded" to INFEASIBLE for some engines. An INFEASIBLE answer is
therefore only trusted as is when it cannot hide unboundedness (no objective, or every variable
bounded); otherwise the objective is cleared and the model re-solved to tell the two apart.
"""

from __future__ import annotations

import math
import time

import numpy as np

from exactverify.errors import InvalidInputError, SolverError

from ._common import (
    COMMON_OPTIONS,
    aggregate,
    check_indices,
    check_options,
    empty_row_holds,
    gap_closed,
    prepare_solve,
)
from .base import Backend, SolveResult, Status

try:
    from ortools.linear_solver import pywraplp
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise SolverError("the 'ortools' backend needs the ortools package (pip install ortools)") from exc

DEFAULT_ENGINE = "SCIP"
# Engine parameters applied when the ``params`` option is not given (see the module docstring).
DEFAULT_ENGINE_PARAMS = {"SCIP": "separating/aggregation/freq = -1"}
EXACT_ENGINES = ("SCIP", "HIGHS", "CBC")  # engines whose continuous variables are exact reals
# An answer-less return after this fraction of the time limit is reported as TIMEOUT (not ERROR).
TIMEOUT_FRACTION = 0.95

_RAW = {
    pywraplp.Solver.OPTIMAL: "OPTIMAL",
    pywraplp.Solver.FEASIBLE: "FEASIBLE",
    pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
    pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
    pywraplp.Solver.ABNORMAL: "ABNORMAL",
    pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED",
    pywraplp.Solver.MODEL_INVALID: "MODEL_INVALID",
}


class OrToolsBackend(Backend):
    """One pywraplp model on engine ``solver``; ``defaults`` are default solve options."""

    name = "ortools"
    OPTIONS = COMMON_OPTIONS | {"params"}

    def __init__(self, solver: str = DEFAULT_ENGINE, **defaults) -> None:
        super().__init__()
        engine = str(solver).upper()
        if engine not in EXACT_ENGINES:
            raise InvalidInputError(f"solver must be one of {EXACT_ENGINES} for exact MILP, got {solver!r}")
        self._defaults = check_options(dict(defaults), self.OPTIONS, self.name)
        self._solver = pywraplp.Solver.CreateSolver(engine)
        if self._solver is None:
            raise SolverError(f"ortools was built without the {engine} engine")
        self.engine = engine
        self.name = f"ortools-{engine.lower()}"
        self._inf = self._solver.infinity()
        self._vars: list = []
        self._all_bounded = True
        self._has_objective = False
        self._violated_empty: str | None = None

    def _bound(self, value: float) -> float:
        return value if math.isfinite(value) else math.copysign(self._inf, value)

    # -- building -------------------------------------------------------------
    def _new_var(self, lb: float, ub: float, integer: bool, name: str) -> None:
        self._all_bounded &= math.isfinite(lb) and math.isfinite(ub)
        make = self._solver.IntVar if integer else self._solver.NumVar
        self._vars.append(make(self._bound(lb), self._bound(ub), name))

    def _add_constraint(self, index: np.ndarray, coef: np.ndarray, sense: str, rhs: float, name: str) -> None:
        idx, cf = aggregate(index, coef)
        check_indices(idx, self.num_vars, f"constraint {name!r}")
        if not idx:
            if not empty_row_holds(sense, rhs) and self._violated_empty is None:
                self._violated_empty = f"empty constraint {name or '<unnamed>'}"
            return
        lo = rhs if sense in (">=", "==") else -self._inf
        hi = rhs if sense in ("<=", "==") else self._inf
        row = self._solver.Constraint(lo, hi, name)
        variables = self._vars
        for i, c in zip(idx, cf, strict=True):
            row.SetCoefficient(variables[i], c)

    def _set_objective(self, index: np.ndarray, coef: np.ndarray, constant: float, minimize: bool) -> None:
        idx, cf = aggregate(index, coef)
        check_indices(idx, self.num_vars, "objective")
        objective = self._solver.Objective()
        objective.Clear()
        for i, c in zip(idx, cf, strict=True):
            objective.SetCoefficient(self._vars[i], c)
        objective.SetOffset(constant)
        if minimize:
            objective.SetMinimization()
        else:
            objective.SetMaximization()
        self._has_objective = bool(idx) or bool(constant)

    def write(self, path: str) -> None:
        """Write the model as LP (``.lp``) or MPS (anything else) text."""
        text = self._solver.ExportModelAsLpFormat(False) if str(path).endswith(".lp") \
            else self._solver.ExportModelAsMpsFormat(True, False)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    # -- solving --------------------------------------------------------------
    def _params(self, opts: dict) -> pywraplp.MPSolverParameters:
        params = pywraplp.MPSolverParameters()
        params.SetDoubleParam(params.RELATIVE_MIP_GAP, float(opts.get("gap") or 0.0))
        if opts.get("feastol") is not None:
            params.SetDoubleParam(params.PRIMAL_TOLERANCE, float(opts["feastol"]))
        return params

    def _solve(self, time_limit: float | None, threads: int, options: dict) -> SolveResult:
        opts, early = prepare_solve(self, time_limit, threads, options)
        if early is not None:
            return early
        start = time.perf_counter()
        solver = self._solver
        if opts.get("verbose"):
            solver.EnableOutput()
        else:
            solver.SuppressOutput()
        if time_limit is not None:
            solver.SetTimeLimit(max(1, int(math.ceil(time_limit * 1000))))
        engine_params = opts.get("params", DEFAULT_ENGINE_PARAMS.get(self.engine))
        if engine_params and not solver.SetSolverSpecificParametersAsString(str(engine_params)):
            raise InvalidInputError(f"{self.name}: option 'params' was rejected by {self.engine}: {engine_params!r}")
        if threads > 1:
            solver.SetNumThreads(int(threads))  # returns False where the engine has no threads
        params = self._params(opts)
        code = solver.Solve(params)
        raw = _RAW.get(code, f"code {code}")
        if raw == "INFEASIBLE" and self._has_objective and not self._all_bounded:
            raw = self._disambiguate(time_limit, start, params)
        return self._result(raw, time_limit, opts, time.perf_counter() - start)

    def _disambiguate(self, time_limit: float | None, start: float, params) -> str:
        """Re-solve without objective: infeasible stays INFEASIBLE, a point means UNBOUNDED."""
        solver = self._solver
        if time_limit is not None:
            left = time_limit - (time.perf_counter() - start)
            if left <= 0:
                return "INFEASIBLE_OR_UNBOUNDED"
            solver.SetTimeLimit(max(1, int(math.ceil(left * 1000))))
        solver.Objective().Clear()
        self._has_objective = False
        code = solver.Solve(params)
        if code == pywraplp.Solver.INFEASIBLE:
            return "INFEASIBLE"
        if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
            return "UNBOUNDED"
        return "INFEASIBLE_OR_UNBOUNDED"

    def _result(self, raw: str, time_limit: float | None, opts: dict, seconds: float) -> SolveResult:
        solver = self._solver
        try:
            nodes = int(solver.nodes())
        except Exception:  # noqa: BLE001 - not every engine counts nodes
            nodes = None
        common = {"raw_status": raw, "node_count": nodes, "seconds": seconds, "backend": self.name}
        if raw == "INFEASIBLE":
            return SolveResult(Status.INFEASIBLE, **common)
        if raw == "UNBOUNDED":
            return SolveResult(Status.UNBOUNDED, **common)
        if raw in ("OPTIMAL", "FEASIBLE"):
            objective = float(solver.Objective().Value())
            values = np.array([v.solution_value() for v in self._vars], dtype=np.float64)
            if not self._has_objective:
                return SolveResult(Status.OPTIMAL, objective=objective, bound=objective, values=values, **common)
            bound = float(solver.Objective().BestBound())
            exact = raw == "OPTIMAL" and (not opts.get("gap") or gap_closed(objective, bound))
            if raw == "OPTIMAL" and not exact:
                common["raw_status"] = "OPTIMAL (within gap)"
            return SolveResult(Status.OPTIMAL if exact else Status.FEASIBLE, objective=objective,
                               bound=bound if math.isfinite(bound) else None, values=values, **common)
        # No answer: a timeout if the limit was reached (HiGHS then returns an unlisted code 99,
        # others NOT_SOLVED), otherwise an error. Neither status claims anything.
        if time_limit is not None and (raw == "NOT_SOLVED" or seconds >= TIMEOUT_FRACTION * time_limit):
            return SolveResult(Status.TIMEOUT, **common)
        return SolveResult(Status.ERROR, **common)
