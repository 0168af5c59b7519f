"""Solver backends agree with each other and with a brute-force oracle.

Oracle: enumerate every binary assignment and solve the remaining LP with scipy's
``linprog``; the best assignment is the MILP optimum. Every returned point is also
checked against the constraints directly, so a backend cannot pass by agreeing on a
wrong number.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

from encoders.backends import (
    Backend,
    Status,
    available_backends,
    make_backend,
    solver_versions,
)
from exactverify.errors import InvalidInputError

# Solvers enforce constraints up to a feasibility tolerance of ~1e-6 (SCIP default, also
# ortools' engines); z3 is exact. Points are checked with this slack, objectives compared
# with OBJ_TOL (absolute + relative).
FEAS_TOL = 1e-6
OBJ_TOL = 1e-6

# (backend name, constructor options): the three backends, SCIP without primal heuristics
# (how decisions run), plus ortools' other exact engines.
ROUTES = {"scip": ("scip", {}), "scip-heuristics-off": ("scip", {"heuristics": "off"}),
          "ortools": ("ortools", {}), "z3": ("z3", {}),
          "ortools-highs": ("ortools", {"solver": "HIGHS"}), "ortools-cbc": ("ortools", {"solver": "CBC"})}


def _route_params():
    params = [pytest.param(route, id=label, marks=() if route[0] in available_backends()
                           else pytest.mark.skip(reason=f"{route[0]} package not installed"))
              for label, route in ROUTES.items()]
    return pytest.mark.parametrize("route", params)


# -- random models and the oracle ------------------------------------------------
class Milp:
    """A small MILP kept as data, so it can be built into any backend and brute-forced."""

    def __init__(self, rng: np.random.Generator, n_cont: int, n_bin: int, n_rows: int, plant: bool) -> None:
        self.lb = np.concatenate([rng.uniform(-3, 0, n_cont), np.zeros(n_bin)])
        self.ub = np.concatenate([rng.uniform(0, 3, n_cont), np.ones(n_bin)])
        self.integer = np.array([False] * n_cont + [True] * n_bin)
        n = n_cont + n_bin
        # a planted point makes every row hold there (so the model is feasible)
        point = np.concatenate([rng.uniform(self.lb[:n_cont], self.ub[:n_cont]), rng.integers(0, 2, n_bin)])
        self.rows = []
        for _ in range(n_rows):
            index = rng.choice(n, size=rng.integers(2, n + 1), replace=False)
            coef = np.round(rng.normal(size=index.size), 3)
            sense = str(rng.choice(["<=", ">=", "=="], p=[0.45, 0.45, 0.1]))
            rhs = float(np.round(rng.normal(), 3))
            if plant:
                slack = {"<=": 1.0, ">=": -1.0, "==": 0.0}[sense] * rng.uniform(0.0, 1.0)
                rhs = float(coef @ point[index]) + slack
            self.rows.append((index, coef, sense, rhs))
        self.obj = np.round(rng.normal(size=n), 3)
        self.minimize = bool(rng.integers(2))

    def build(self, backend: Backend, objective: bool = True) -> None:
        for lo, up, integer in zip(self.lb, self.ub, self.integer, strict=True):
            backend.add_var(lo, up, bool(integer))
        for index, coef, sense, rhs in self.rows:
            backend.add_constraint(index, coef, sense, rhs)
        if objective:
            backend.set_objective(np.arange(self.obj.size), self.obj, minimize=self.minimize)

    def violation(self, x: np.ndarray) -> float:
        """Largest violation of bounds, integrality and rows at ``x``."""
        worst = max(0.0, float(np.max(self.lb - x)), float(np.max(x - self.ub)))
        worst = max(worst, float(np.max(np.abs(x[self.integer] - np.round(x[self.integer])), initial=0.0)))
        for index, coef, sense, rhs in self.rows:
            lhs = float(coef @ x[index])
            gap = {"<=": lhs - rhs, ">=": rhs - lhs, "==": abs(lhs - rhs)}[sense]
            worst = max(worst, gap)
        return worst

    def brute_force(self) -> float | None:
        """Optimal objective (None when infeasible), by enumerating binaries + linprog."""
        cont = np.flatnonzero(~self.integer)
        bins = np.flatnonzero(self.integer)
        sign = 1.0 if self.minimize else -1.0
        best = None
        for assignment in itertools.product([0.0, 1.0], repeat=bins.size):
            fixed = np.zeros(self.obj.size)
            fixed[bins] = assignment
            a_ub, b_ub, a_eq, b_eq = [], [], [], []
            for index, coef, sense, rhs in self.rows:
                row = np.zeros(self.obj.size)
                row[index] = coef
                rest = rhs - row[bins] @ fixed[bins]
                if sense == "<=":
                    a_ub.append(row[cont]), b_ub.append(rest)
                elif sense == ">=":
                    a_ub.append(-row[cont]), b_ub.append(-rest)
                else:
                    a_eq.append(row[cont]), b_eq.append(rest)
            res = linprog(sign * self.obj[cont], A_ub=a_ub or None, b_ub=b_ub or None, A_eq=a_eq or None,
                          b_eq=b_eq or None, bounds=list(zip(self.lb[cont], self.ub[cont], strict=True)),
                          method="highs")
            if res.status == 0:
                value = sign * res.fun + self.obj[bins] @ fixed[bins]
                best = value if best is None or sign * value < sign * best else best
        return best


RANDOM_SEEDS = range(24)


@pytest.fixture(scope="module")
def random_milps():
    models = []
    for seed in RANDOM_SEEDS:
        rng = np.random.default_rng(1000 + seed)
        milp = Milp(rng, n_cont=int(rng.integers(1, 4)), n_bin=int(rng.integers(1, 5)),
                    n_rows=int(rng.integers(2, 6)), plant=seed % 3 != 0)
        models.append((milp, milp.brute_force()))
    # the sample must exercise both outcomes, or the test proves little
    assert sum(opt is None for _, opt in models) >= 2
    assert sum(opt is not None for _, opt in models) >= 12
    return models


@_route_params()
def test_random_milps_match_brute_force(route, random_milps):
    name, options = route
    for k, (milp, optimum) in enumerate(random_milps):
        backend = make_backend(name, **options)
        milp.build(backend)
        res = backend.solve(time_limit=20)
        where = f"model {k} ({name} {options})"
        if optimum is None:
            assert res.status == Status.INFEASIBLE, f"{where}: oracle says infeasible, got {res}"
            continue
        assert res.status == Status.OPTIMAL, f"{where}: got {res.status} ({res.raw_status})"
        assert abs(res.objective - optimum) <= OBJ_TOL * (1 + abs(optimum)), f"{where}: {res.objective} vs {optimum}"
        assert res.values.shape == (milp.obj.size,)
        assert milp.violation(res.values) <= FEAS_TOL, f"{where}: returned point violates the model"
        assert abs(milp.obj @ res.values - res.objective) <= OBJ_TOL * (1 + abs(optimum))
        assert res.bound is not None and abs(res.bound - res.objective) <= OBJ_TOL * (1 + abs(optimum))


@_route_params()
def test_feasibility_model_returns_a_checked_point(route):
    name, options = route
    for seed in range(5):
        rng = np.random.default_rng(seed)
        milp = Milp(rng, n_cont=3, n_bin=3, n_rows=4, plant=True)  # feasible: must answer OPTIMAL
        backend = make_backend(name, **options)
        milp.build(backend, objective=False)
        res = backend.solve(time_limit=20)
        assert res.status == Status.OPTIMAL, f"seed {seed}: {res}"
        assert milp.violation(res.values) <= FEAS_TOL, f"seed {seed}: point violates a constraint"


@_route_params()
def test_infeasible_models(route):
    name, options = route
    # integrality makes it infeasible: 0.3 <= d <= 0.7 with d binary; LP relaxation is feasible
    backend = make_backend(name, **options)
    d = backend.add_binary()
    x = backend.add_var(-1.0, 1.0)
    backend.add_constraint([d, x], [1.0, 0.0], ">=", 0.3)
    backend.add_constraint([d], [1.0], "<=", 0.7)
    backend.set_objective([x], [1.0])
    assert backend.solve(time_limit=10).status == Status.INFEASIBLE
    # infeasible rows plus a free variable in the objective: "infeasible or unbounded" must resolve
    backend = make_backend(name, **options)
    x, free = backend.add_var(0.0, 10.0), backend.add_var()
    backend.add_constraint([x], [1.0], ">=", 11.0)
    backend.set_objective([free], [1.0])
    assert backend.solve(time_limit=10).status == Status.INFEASIBLE
    # a constraint whose terms all cancel and whose right-hand side is violated
    backend = make_backend(name, **options)
    x = backend.add_var(0.0, 1.0)
    backend.add_constraint([x, x], [1.0, -1.0], ">=", 1.0)
    assert backend.solve(time_limit=10).status == Status.INFEASIBLE


@_route_params()
def test_unbounded_model(route):
    name, options = route
    backend = make_backend(name, **options)
    x, y, d = backend.add_var(), backend.add_var(0.0), backend.add_binary()
    backend.add_constraint([x, y, d], [1.0, -1.0, 1.0], "<=", 2.0)
    backend.set_objective([x], [1.0], minimize=True)  # x -> -inf along y = 0
    res = backend.solve(time_limit=10)
    assert res.status == Status.UNBOUNDED, res
    assert res.objective is None and res.bound is None


@_route_params()
def test_repeated_indices_are_summed(route):
    name, options = route
    backend = make_backend(name, **options)
    x = backend.add_var(0.0, 10.0)
    backend.add_constraint([x, x, x], [1.0, 1.0, -0.5], "<=", 3.0)  # 1.5 x <= 3
    backend.set_objective([x, x], [-1.0, 0.0])
    res = backend.solve(time_limit=10)
    assert res.status == Status.OPTIMAL and abs(res.objective + 2.0) <= OBJ_TOL


def _planted_market_split(backend: Backend, seed: int) -> tuple[np.ndarray, float]:
    """Cornuejols-Dawande market split rows with a planted solution: hard for branch and bound.

    Returns (planted point, its objective), so a claimed optimum can be checked against it.
    """
    rng = np.random.default_rng(seed)
    n, m = 40, 4
    a = rng.integers(0, 100, size=(m, n)).astype(float)
    planted = rng.integers(0, 2, size=n).astype(float)
    xs = backend.add_vars(np.zeros(n), np.ones(n), integer=True)
    for row in a:
        backend.add_constraint(xs, row, "==", float(row @ planted))
    cost = rng.integers(1, 50, size=n).astype(float)
    backend.set_objective(xs, cost)
    return planted, float(cost @ planted)


@_route_params()
def test_tiny_time_limit_never_lies(route):
    name, options = route
    limit = 0.2
    backend = make_backend(name, **options)
    planted, planted_cost = _planted_market_split(backend, seed=7)
    res = backend.solve(time_limit=limit)
    assert res.status != Status.INFEASIBLE, "the model has a planted solution"
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE, Status.TIMEOUT), res
    if res.status.has_solution:
        assert res.objective <= planted_cost + OBJ_TOL * planted_cost, "an optimum cannot cost more than a known point"
        assert res.values is not None
    if res.status == Status.FEASIBLE and res.bound is not None:
        assert res.bound <= res.objective + OBJ_TOL * (1 + abs(res.objective))
    if res.status == Status.TIMEOUT:
        assert res.objective is None and res.values is None
    assert res.seconds <= limit + 5.0, f"time limit overrun: {res.seconds:.2f} s"


@_route_params()
def test_second_solve_and_later_edits_raise(route):
    name, options = route
    backend = make_backend(name, **options)
    x = backend.add_var(0.0, 1.0)
    backend.set_objective([x], [1.0])
    assert backend.solve().status == Status.OPTIMAL
    with pytest.raises(RuntimeError, match="already solved"):
        backend.solve()
    with pytest.raises(RuntimeError, match="already solved"):
        backend.add_var(0.0, 1.0)


@_route_params()
def test_solve_argument_validation(route):
    name, options = route
    for kwargs, match in [({"time_limit": 0}, "time_limit"), ({"time_limit": math.inf}, "time_limit"),
                          ({"threads": 0}, "threads"), ({"bogus": 1}, "unknown solve option"),
                          ({"gap": -1.0}, "'gap'")]:
        backend = make_backend(name, **options)
        backend.add_var(0.0, 1.0)
        with pytest.raises(InvalidInputError, match=match):
            backend.solve(**kwargs)


def test_constraint_with_unknown_variable_is_rejected():
    backend = make_backend("scip")
    backend.add_var(0.0, 1.0)
    with pytest.raises(InvalidInputError, match="variable index"):
        backend.add_constraint([0, 3], [1.0, 1.0], "<=", 1.0)


def test_scip_gap_option_reports_feasible_or_optimal_honestly():
    backend = make_backend("scip", gap=0.5)
    _, planted_cost = _planted_market_split(backend, seed=3)
    res = backend.solve(time_limit=5)
    if res.status == Status.FEASIBLE:
        assert res.bound <= res.objective <= planted_cost + 1e-6
    else:
        assert res.status in (Status.OPTIMAL, Status.TIMEOUT)


def test_scip_cutoff_and_stop_at():
    """``cutoff`` prunes everything not strictly better (none left: infeasible); ``stop_at``
    returns a solution at least that good; both need an objective and a finite value."""
    def model():
        be = make_backend("scip")
        xs = be.add_vars([0.0] * 3, [1.0] * 3, integer=True)
        be.add_constraint(xs, [1.0, 1.0, 1.0], "<=", 2.0)
        be.set_objective(xs, [3.0, 2.0, 1.0], minimize=False)  # optimum 5
        return be

    assert model().solve(time_limit=10, cutoff=5.5).status == Status.INFEASIBLE
    result = model().solve(time_limit=10, cutoff=4.5)
    assert result.status == Status.OPTIMAL and result.objective == pytest.approx(5.0)
    result = model().solve(time_limit=10, stop_at=2.0)
    assert result.status.has_solution and result.objective >= 2.0 - 1e-9
    with pytest.raises(InvalidInputError, match="cutoff"):
        model().solve(cutoff=float("nan"))
    plain = make_backend("scip")
    plain.add_var(0.0, 1.0)
    with pytest.raises(InvalidInputError, match="needs an objective"):
        plain.solve(stop_at=0.0)


def test_scip_heuristics_option():
    """``heuristics`` sets SCIP's heuristics emphasis; raw ``params`` still win; bad values are named."""
    def model(**options):
        be = make_backend("scip", **options)
        xs = be.add_vars([0.0] * 3, [1.0] * 3, integer=True)
        be.add_constraint(xs, [1.0, 1.0, 1.0], "<=", 2.0)
        be.set_objective(xs, [3.0, 2.0, 1.0], minimize=False)
        return be

    off = model(heuristics="off")
    assert off.solve(time_limit=10).objective == pytest.approx(5.0)
    assert off._model.getParam("heuristics/rens/freq") == -1
    assert off._model.getParam("heuristics/shifting/freq") == -1
    on = model()
    assert on.solve(time_limit=10).objective == pytest.approx(5.0)
    assert on._model.getParam("heuristics/rens/freq") != -1
    mixed = model(heuristics="off")
    mixed.solve(time_limit=10, params={"heuristics/rens/freq": 7})
    assert mixed._model.getParam("heuristics/rens/freq") == 7
    with pytest.raises(InvalidInputError, match="heuristics"):
        model().solve(heuristics="none")


def test_scip_write(tmp_path):
    backend = make_backend("scip")
    x = backend.add_var(0.0, 2.0, name="alpha")
    backend.add_constraint([x], [1.0], "<=", 1.5, name="cap")
    path = tmp_path / "model.lp"
    backend.write(str(path))
    text = path.read_text()
    assert "alpha" in text and "cap" in text


def test_z3_uses_exact_float_values():
    # 0.1 + 0.2 != 0.3 in float64; z3 must see the exact binary values, so x = 0.3 fails
    backend = make_backend("z3")
    x = backend.add_var(0.3, 0.3)
    backend.add_constraint([x], [1.0], "==", 0.1 + 0.2)
    assert backend.solve(time_limit=5).status == Status.INFEASIBLE


def test_make_backend_errors_and_listing():
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        make_backend("gurobi")
    with pytest.raises(InvalidInputError, match="solver must be one of"):
        make_backend("ortools", solver="CP_SAT")
    assert "scip" in available_backends()
    versions = solver_versions()
    assert {"pyscipopt", "scip", "ortools", "z3"} <= set(versions)
    assert all(isinstance(v, str) and v for v in versions.values())


def test_import_does_not_load_optional_solvers():
    code = ("import sys, encoders.backends as b; b.available_backends(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ortools', 'z3', 'highspy')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _market_split(seed: int = 0, rows: int = 4, columns: int = 36) -> Backend:
    """A market-split feasibility model (Cornuejols-Dawande): seconds to hours for SCIP."""
    rng = np.random.default_rng(seed)
    backend = make_backend("scip")
    x = [backend.add_binary(f"x{i}") for i in range(columns)]
    for _ in range(rows):
        a = rng.integers(0, 100, columns)
        backend.add_constraint(x, a, "==", float(a.sum() // 2))
    return backend


def _sigint_after(seconds: float):
    import os
    import signal
    import threading

    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_scip_hands_ctrl_c_back_as_keyboard_interrupt_not_as_a_time_limit():
    import signal

    # Python's own Ctrl-C handler, whatever the test runner inherited (a background job ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _sigint_after(1.0)
    try:
        with pytest.raises(KeyboardInterrupt, match="SCIP solve interrupted by Ctrl-C"):
            _market_split().solve(time_limit=20)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


def test_scip_ignores_ctrl_c_where_the_process_ignores_it():
    """Campaign workers ignore SIGINT (the parent stops them); SCIP must not end their solves early."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    timer = _sigint_after(0.5)
    try:
        result = _market_split().solve(time_limit=2)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert result.raw_status == "timelimit" and result.seconds >= 1.9


def test_scip_interrupt_from_another_thread_is_a_status_not_an_exception():
    import threading

    backend = _market_split()
    threading.Timer(0.5, backend.interrupt).start()
    result = backend.solve(time_limit=20)
    assert result.raw_status == "userinterrupt" and result.seconds < 10
