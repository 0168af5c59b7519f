"""SCIP through pyscipopt: the default backend.

SCIP solves sequentially: ``threads`` is accepted for interface compatibility and ignored.
A solve releases the GIL, so models in several Python threads solve in parallel
(:mod:`exactverify.queries.split`), and :meth:`ScipBackend.interrupt` stops one from another thread.
Solve options: ``gap`` (relative MIP gap, default 0: prove optimality), ``feastol``
(primal feasibility tolerance, default SCIP's 1e-6), ``verbose`` (show SCIP's log),
``params`` (dict of raw SCIP parameters, applied over :data:`DEFAULT_PARAMS`), ``cutoff``
(only solutions with an objective strictly better than it are wanted: SCIP's objective
limit, which prunes every node whose bound cannot beat it; none left is "infeasible") and
``stop_at`` (stop as soon as a solution is at least this good: ``limits/primal``) and
``heuristics`` (one of :data:`HEURISTICS`: SCIP's primal-heuristics setting, applied before
``params``; decisions run ``"off"``, measured neutral against ``"default"`` on the hardest MNIST
closing probes: ``benchmarks/results/split_heuristics.md``) and ``progress`` (a callable that
gets a :class:`~encoders.backends.base.SolveProgress` at most every :data:`PROGRESS_INTERVAL`
seconds while SCIP solves: elapsed time, nodes, best objective and dual bound; read by an event
handler on solved nodes, which changes nothing in the search).

:data:`DEFAULT_PARAMS` switches off SCIP's aggregation (c-MIR/flow-cover) separator: on ReLU
big-M models it took ~85% of the run time (6.4 of 7.4 s on a 31-binary model), and without
it four benchmark MILPs solved 4-7x faster (CPU 1.3/3.0/6.6/7.4 s -> 0.3/0.2/1.1/1.2 s, same
optima). It also caps the cut rounds: at most 3 at the root and none in the tree. On six
verify MILPs of the 784-24-24-24-10 MNIST network near the minimal distortion (60 s limit,
thousands of nodes each) the five decided ones took 65 s in all with the cap against 184 s
without it (one more query decided), because separation dominated the time per node.
Separators only affect speed, never correctness. Pass ``params={"separating/aggregation/freq":
10, "separating/maxroundsroot": -1, "separating/maxrounds": -1}`` to restore SCIP's stock setting.

Constraints are built as a ``pyscipopt.Expr`` from a ``{Term(var): coef}`` dict rather
than by summing ``coef * var`` products: on 10^4 rows of 20 terms this measured 0.20 s
against 0.33-0.39 s for ``quicksum`` and 0.28 s for ``addConsCoeff`` (SCIP 10.0.2).
"""

from __future__ import annotations

import logging
import signal
import time

import numpy as np
import pyscipopt
from pyscipopt.scip import Expr, ExprCons, Term

from exactverify.errors import InvalidInputError

from ._common import (
    COMMON_OPTIONS,
    aggregate,
    check_indices,
    check_options,
    empty_row_holds,
    gap_closed,
    prepare_solve,
)
from .base import Backend, SolveProgress, SolveResult, Status

log = logging.getLogger(__name__)

#: Least seconds between two in-flight reports to a ``progress`` callback.
PROGRESS_INTERVAL = 2.0
#: SCIP's "infinite" objective values (+-1e20 by default) are reported as None.
_SCIP_INFINITY = 1e19

# SCIP statuses meaning "stopped at a limit": a known point makes the result FEASIBLE,
# none makes it TIMEOUT. Memory exhaustion without a point is an ERROR instead.
_LIMIT_STATUSES = frozenset({
    "timelimit", "gaplimit", "nodelimit", "totalnodelimit", "stallnodelimit", "sollimit",
    "bestsollimit", "restartlimit", "primallimit", "duallimit", "userinterrupt", "memlimit",
})


def scip_version() -> str:
    """Version of the SCIP library linked into pyscipopt, e.g. ``10.0.2``."""
    model = pyscipopt.Model()
    return f"{model.getMajorVersion()}.{model.getMinorVersion()}.{model.getTechVersion()}"


# Stages in which a solve can be interrupted.
_RUNNING_STAGES = frozenset({pyscipopt.SCIP_STAGE.PRESOLVING, pyscipopt.SCIP_STAGE.SOLVING})

# SCIP parameters this backend sets unless the ``params`` option overrides them (see above).
DEFAULT_PARAMS: dict[str, object] = {
    "separating/aggregation/freq": -1,
    "separating/maxroundsroot": 3,
    "separating/maxrounds": 0,
}


#: Values of the ``heuristics`` option, SCIP's ``setHeuristics`` settings.
HEURISTICS = {
    "default": pyscipopt.SCIP_PARAMSETTING.DEFAULT,
    "off": pyscipopt.SCIP_PARAMSETTING.OFF,
    "fast": pyscipopt.SCIP_PARAMSETTING.FAST,
    "aggressive": pyscipopt.SCIP_PARAMSETTING.AGGRESSIVE,
}


class _ProgressReporter(pyscipopt.Eventhdlr):
    """Calls ``callback(SolveProgress)`` from SCIP's node loop, at most every PROGRESS_INTERVAL s.

    A callback that raises is logged once and not called again: a display must never change
    what the solve proves. One that raises KeyboardInterrupt (a user stopping the query from
    the display) interrupts the solve, and the solve raises it again once SCIP has stopped."""

    def __init__(self, callback, start: float) -> None:
        self.callback, self.start, self.last = callback, start, start
        self.stopped_by: BaseException | None = None

    def eventinit(self) -> None:
        self.model.catchEvent(pyscipopt.SCIP_EVENTTYPE.NODESOLVED, self)

    def eventexit(self) -> None:
        self.model.dropEvent(pyscipopt.SCIP_EVENTTYPE.NODESOLVED, self)

    def eventexec(self, event) -> None:
        now = time.perf_counter()
        if self.callback is None or now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        model = self.model
        bound = float(model.getDualbound())
        objective = float(model.getPrimalbound()) if model.getNSols() > 0 else None
        report = SolveProgress(now - self.start, int(model.getNNodes()),
                               objective if objective is not None and abs(objective) < _SCIP_INFINITY else None,
                               bound if abs(bound) < _SCIP_INFINITY else None)
        try:
            self.callback(report)
        except KeyboardInterrupt as exc:
            self.stopped_by, self.callback = exc, None
            model.interruptSolve()
        except Exception:  # noqa: BLE001 - a broken display callback must not end the solve
            log.warning("scip: the progress callback raised; no further reports from this solve", exc_info=True)
            self.callback = None


class ScipBackend(Backend):
    """One SCIP model; ``defaults`` are solve options applied unless ``solve`` overrides them."""

    name = "scip"
    OPTIONS = COMMON_OPTIONS | {"params", "cutoff", "stop_at", "heuristics"}

    def __init__(self, **defaults) -> None:
        super().__init__()
        self._defaults = check_options(dict(defaults), self.OPTIONS, self.name)
        self._model = pyscipopt.Model()
        self._model.hideOutput()
        self._vars: list = []
        self._terms: list = []  # Term(var) per variable, reused by every row
        self._has_objective = False
        self._violated_empty: str | None = None
        self._interrupt_requested = False  # set by interrupt(): a "userinterrupt" that is not Ctrl-C

    # -- building -------------------------------------------------------------
    def _new_var(self, lb: float, ub: float, integer: bool, name: str) -> None:
        vtype = "B" if integer and lb == 0.0 and ub == 1.0 else ("I" if integer else "C")
        var = self._model.addVar(name=name, vtype=vtype, lb=None if lb == -np.inf else lb,
                                 ub=None if ub == np.inf else ub)
        self._vars.append(var)
        self._terms.append(Term(var))

    def _expr(self, index: np.ndarray, coef: np.ndarray, what: str) -> Expr:
        idx, cf = aggregate(index, coef)
        check_indices(idx, self.num_vars, what)
        terms = self._terms
        return Expr(dict(zip([terms[i] for i in idx], cf, strict=True)))

    def _add_constraint(self, index: np.ndarray, coef: np.ndarray, sense: str, rhs: float, name: str) -> None:
        expr = self._expr(index, coef, f"constraint {name!r}")
        if not expr.terms:
            if not empty_row_holds(sense, rhs) and self._violated_empty is None:
                self._violated_empty = f"empty constraint {name or '<unnamed>'}"
            return
        lhs = rhs if sense in (">=", "==") else None
        upper = rhs if sense in ("<=", "==") else None
        kwargs = {"name": name} if name else {}
        self._model.addCons(ExprCons(expr, lhs=lhs, rhs=upper), **kwargs)

    def _set_objective(self, index: np.ndarray, coef: np.ndarray, constant: float, minimize: bool) -> None:
        expr = self._expr(index, coef, "objective")
        if constant:
            expr = expr + constant
        self._model.setObjective(expr, "minimize" if minimize else "maximize")
        self._has_objective = bool(index.size) or bool(constant)

    def write(self, path: str) -> None:
        """Write the model in any format SCIP knows from the file extension (.lp, .mps, .cip)."""
        self._model.writeProblem(str(path), trans=False, verbose=False)

    # -- solving --------------------------------------------------------------
    def _solve(self, time_limit: float | None, threads: int, options: dict) -> SolveResult:
        opts, early = prepare_solve(self, time_limit, threads, options)
        if early is not None:
            return early
        start = time.perf_counter()
        model = self._model
        if opts.get("verbose"):
            model.hideOutput(False)
        if time_limit is not None:
            model.setParam("limits/time", float(time_limit))
        if opts.get("gap") is not None:
            model.setParam("limits/gap", float(opts["gap"]))
        if opts.get("feastol") is not None:
            model.setParam("numerics/feastol", float(opts["feastol"]))
        for key in ("cutoff", "stop_at"):
            value = opts.get(key)
            if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value)):
                raise InvalidInputError(f"scip: option {key!r} must be a finite number, got {value!r}")
            if value is not None and not self._has_objective:
                raise InvalidInputError(f"scip: option {key!r} needs an objective (set_objective first)")
        if opts.get("cutoff") is not None:
            model.setObjlimit(float(opts["cutoff"]))
        if opts.get("stop_at") is not None:
            model.setParam("limits/primal", float(opts["stop_at"]))
        heuristics = opts.get("heuristics", "default")
        if heuristics not in HEURISTICS:
            raise InvalidInputError(f"scip: option 'heuristics' must be one of {tuple(HEURISTICS)}, got {heuristics!r}")
        if heuristics != "default":  # untouched otherwise: every other solve runs as before the option
            model.setHeuristics(HEURISTICS[heuristics])
        params = opts.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidInputError(f"scip: option 'params' must be a dict of SCIP parameters, got {params!r}")
        for key, value in {**DEFAULT_PARAMS, **params}.items():
            try:
                model.setParam(key, value)
            except Exception as exc:  # noqa: BLE001 - pyscipopt raises bare KeyError/LookupError
                raise InvalidInputError(f"scip: option 'params' sets {key!r}={value!r}, rejected: {exc}") from exc
        reporter = None
        if opts.get("progress") is not None:
            reporter = _ProgressReporter(opts["progress"], start)
            model.includeEventhdlr(reporter, "exactverify_progress", "in-flight reports to the progress solve option")
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # SCIP catches Ctrl-C even where Python ignores it (campaign workers: Ctrl-C is the
            # parent's, which stops cleanly); left on, the solve would end early as "unknown".
            model.setParam("misc/catchctrlc", False)
        try:
            model.optimizeNogil()  # releases the GIL: models in other threads solve meanwhile
            raw = str(model.getStatus())
            if raw == "inforunbd":
                raw = self._disambiguate(time_limit, start)
        except Exception as exc:  # noqa: BLE001 - any SCIP failure is reported as a status
            return SolveResult(Status.ERROR, f"exception: {exc!r}", seconds=time.perf_counter() - start,
                               backend=self.name)
        if reporter is not None and reporter.stopped_by is not None:
            raise reporter.stopped_by
        if raw == "userinterrupt" and not self._interrupt_requested:
            # SCIP caught Ctrl-C: hand it back to Python as the KeyboardInterrupt it is, so the
            # caller stops (with its bounds so far) instead of treating it as a time limit.
            raise KeyboardInterrupt("SCIP solve interrupted by Ctrl-C")
        return self._result(raw, time.perf_counter() - start)

    def interrupt(self) -> bool:
        """Ask a solve running in another thread to stop soon (status ``userinterrupt``);
        False if it is not presolving or solving (not started yet, or done)."""
        if self._model.getStage() not in _RUNNING_STAGES:
            return False
        self._interrupt_requested = True
        try:
            self._model.interruptSolve()
        except Exception:  # noqa: BLE001 - it ended between the check and the call
            return False
        return True

    def _disambiguate(self, time_limit: float | None, start: float) -> str:
        """SCIP proved "infeasible or unbounded"; a zero-objective re-solve tells which."""
        if not self._has_objective:
            return "infeasible"  # a zero objective cannot be unbounded
        model = self._model
        model.freeTransform()
        model.setObjective(Expr(), "minimize")
        if time_limit is not None:
            left = time_limit - (time.perf_counter() - start)
            if left <= 0:
                return "inforunbd"
            model.setParam("limits/time", left)
        model.optimizeNogil()
        status = model.getStatus()
        if status == "infeasible":
            return "infeasible"
        if model.getNSols() > 0:
            return "unbounded"
        return "inforunbd"

    def _result(self, raw: str, seconds: float) -> SolveResult:
        model = self._model
        nodes = int(model.getNNodes())
        has_sol = model.getNSols() > 0
        common = {"raw_status": raw, "node_count": nodes, "seconds": seconds, "backend": self.name}
        if raw == "infeasible":
            return SolveResult(Status.INFEASIBLE, **common)
        if raw == "unbounded":
            return SolveResult(Status.UNBOUNDED, values=self._values() if has_sol else None, **common)
        if raw == "optimal" or raw in _LIMIT_STATUSES:
            if not has_sol:
                status = Status.TIMEOUT if raw in _LIMIT_STATUSES and raw != "memlimit" else Status.ERROR
                return SolveResult(status, **common)
            objective = float(model.getObjVal())
            bound = float(model.getDualbound())
            if not self._has_objective:
                status = Status.OPTIMAL
            elif raw == "optimal" and gap_closed(objective, bound):
                status = Status.OPTIMAL
            else:
                status = Status.FEASIBLE
            return SolveResult(status, objective=objective, bound=bound, values=self._values(), **common)
        return SolveResult(Status.ERROR, **common)

    def _values(self) -> np.ndarray:
        model = self._model
        sol = model.getBestSol()
        return np.array([model.getSolVal(sol, v) for v in self._vars], dtype=np.float64)
