"""The narrow interface every solver backend implements.

Encoders build a model through these calls only (new variables, linear constraints,
an objective) and then call :meth:`Backend.solve` once; a backend object is one fresh
model for one query and must not be reused after solving. Statuses from every solver
map to :class:`Status`; the solver's own status string is kept in ``raw_status``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np


class Status(str, Enum):
    """Outcome of one solve, solver-independent."""

    OPTIMAL = "optimal"  # proven optimal (or, without objective, a feasible point was found)
    FEASIBLE = "feasible"  # a feasible point is known, optimality not proven (time limit)
    INFEASIBLE = "infeasible"  # proven: no feasible point exists
    TIMEOUT = "timeout"  # time limit reached with no feasible point known
    UNBOUNDED = "unbounded"
    ERROR = "error"  # the solver failed; see raw_status

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclass(frozen=True)
class SolveResult:
    """What a solve returned. ``values`` holds every variable's value, by variable index."""

    status: Status
    raw_status: str
    objective: float | None = None
    bound: float | None = None  # best proven bound on the objective (dual bound)
    values: np.ndarray | None = None
    node_count: int | None = None
    seconds: float = 0.0
    backend: str = ""


@dataclass(frozen=True)
class SolveProgress:
    """An in-flight report of a running solve, for the ``progress`` solve option: a
    callable that backends with solver callbacks (SCIP) call while they solve, at most
    every ``PROGRESS_INTERVAL`` seconds; the others accept the option and never call it."""

    seconds: float
    nodes: int
    objective: float | None  # the best point's objective so far; None before the first point
    bound: float | None  # the dual bound so far; None while the solver has none


SENSES = ("<=", ">=", "==")


class Backend(ABC):
    """One solver model. Variables are identified by consecutive ints from 0."""

    name: str = "backend"

    def __init__(self) -> None:
        self.num_vars = 0
        self._solved = False

    # -- model building -------------------------------------------------------
    @abstractmethod
    def _new_var(self, lb: float, ub: float, integer: bool, name: str) -> None:
        """Create the solver variable for index ``self.num_vars`` (called by add_var)."""

    @abstractmethod
    def _add_constraint(self, index: np.ndarray, coef: np.ndarray, sense: str, rhs: float, name: str) -> None:
        """Add ``sum coef[k] * x[index[k]] (sense) rhs``."""

    @abstractmethod
    def _set_objective(self, index: np.ndarray, coef: np.ndarray, constant: float, minimize: bool) -> None:
        """Set a linear objective."""

    @abstractmethod
    def _solve(self, time_limit: float | None, threads: int, options: dict) -> SolveResult:
        """Run the solver and map its status."""

    def add_var(self, lb: float = -math.inf, ub: float = math.inf, integer: bool = False, name: str = "") -> int:
        """A new continuous (or integer) variable with bounds; returns its index."""
        self._check_open()
        if math.isnan(lb) or math.isnan(ub) or lb > ub:
            raise ValueError(f"variable {name or self.num_vars}: invalid bounds [{lb}, {ub}]")
        self._new_var(float(lb), float(ub), bool(integer), name or f"v{self.num_vars}")
        self.num_vars += 1
        return self.num_vars - 1

    def add_binary(self, name: str = "") -> int:
        return self.add_var(0.0, 1.0, True, name)

    def add_vars(self, lbs: Sequence[float], ubs: Sequence[float], integer: bool = False,
                 prefix: str = "v") -> np.ndarray:
        """One variable per (lb, ub) pair; returns their indices."""
        return np.array([self.add_var(float(lo), float(up), integer, f"{prefix}{k}")
                         for k, (lo, up) in enumerate(zip(lbs, ubs, strict=True))], dtype=np.int64)

    def add_constraint(self, index, coef, sense: str, rhs: float, name: str = "") -> None:
        """``sum_k coef[k] * x[index[k]]  sense  rhs`` with ``sense`` in ``<=, >=, ==``."""
        self._check_open()
        if sense not in SENSES:
            raise ValueError(f"sense must be one of {SENSES}, got {sense!r}")
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        if index.shape != coef.shape:
            raise ValueError("constraint index and coef lengths differ")
        if not (np.isfinite(coef).all() and math.isfinite(rhs)):
            raise ValueError(f"constraint {name!r} has non-finite coefficients or right-hand side")
        keep = coef != 0.0
        self._add_constraint(index[keep], coef[keep], sense, float(rhs), name)

    def set_objective(self, index, coef, constant: float = 0.0, minimize: bool = True) -> None:
        self._check_open()
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        self._set_objective(index, coef, float(constant), minimize)

    def solve(self, time_limit: float | None = None, threads: int = 1, **options) -> SolveResult:
        """Solve once; a second call raises (build a fresh backend per query)."""
        self._check_open()
        self._solved = True
        return self._solve(time_limit, threads, options)

    def write(self, path: str) -> None:  # pragma: no cover - optional debugging aid
        raise NotImplementedError(f"{self.name} cannot write model files")

    def _check_open(self) -> None:
        if self._solved:
            raise RuntimeError(f"{self.name} model was already solved; build a fresh backend per query")
