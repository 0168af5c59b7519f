"""Split exact solves (``threads > 1``): ReLU-phase sub-domains, each one MILP, solved side by side.

Oracles: the exact activation-pattern enumeration of :mod:`oracles` decides the same random
queries; sampled adversarial points always fall in an open sub-domain and inside its bounds;
an interrupted SCIP solve stops with ``userinterrupt`` long before its time limit.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import oracles
import pytest
import torch
from conftest import cached_case, harder_net
from test_queries import (
    BOUND_TOL,
    NO_ATTACK,
    TIME_LIMIT,
    TOL,
    check_counterexample,
    decide_random_queries,
    oracle_distance,
    target_of,
)

import exactverify as ev
from exactverify import ir
from exactverify.errors import InvalidInputError
from exactverify.queries.checks import make_query
from exactverify.queries.split import split_depth, split_region, supports_split
from exactverify.queries.stages import _with_spec_rows

pytest.importorskip("pyscipopt", reason="split solves run on SCIP")


def _split_used(history) -> bool:
    return any("sub-domain" in r.raw_status for r in history)


def test_split_verify_agrees_with_oracle():
    """24 random queries decided as the exact oracle decides them, through split MILPs."""
    verdicts = decide_random_queries(bounds_method="interval", threads=2)
    split_solved = sum(_split_used(v.history) for v in verdicts)
    assert split_solved >= 8, f"only {split_solved} of 24 queries reached a split MILP"


@pytest.mark.parametrize("index,norm,targeted", [(0, "linf", False), (1, "l1", True), (2, "linf", True),
                                                 (3, "l1", False)])
def test_split_minimal_distortion_brackets_oracle(index, norm, targeted):
    case = cached_case(index)
    target = target_of(case, targeted)
    d_star = oracle_distance(index, norm, targeted)
    result = ev.minimal_distortion(case.network, case.x, norm, target, tol=TOL, time_limit=TIME_LIMIT, threads=2)
    if not math.isfinite(d_star):
        assert result.status == "no_counterexample", result.reason
        return
    assert result.status == "optimal", result.reason
    assert result.lower - BOUND_TOL <= d_star <= result.upper + BOUND_TOL
    check_counterexample(case.network, case.x, result.counterexample, norm, case.label, target)


def _values(network: ir.Network, points: torch.Tensor) -> list[torch.Tensor]:
    """The value entering every layer, and the output, for flat points (P, n)."""
    values, value = [], points
    for layer in network.layers:
        values.append(value)
        value = layer.forward(value)
    return values + [value]


@pytest.mark.parametrize("seed,norm", [(0, "linf"), (1, "l1"), (2, "linf")])
def test_open_subdomains_hold_every_adversarial_point(seed, norm):
    """Every sampled adversarial point meets the splits of some open sub-domain and lies inside
    its bounds at every layer (so infeasible sub-MILPs together prove the region robust)."""
    network = harder_net(seed, inputs=6, width=10, depth=3, classes=3)
    x = np.full(6, 0.5)
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    query = make_query(network, x, norm, None, label, (0.0, 1.0), ev.DEFAULT_MARGIN)
    spec = query.spec()
    eps = 0.4 if norm == "linf" else 1.2
    domains, closed = split_region(query, spec, _with_spec_rows(query, spec), query.region(eps), depth=3)
    assert len(domains) + closed >= 1
    points = query.region(eps).sample(20000, torch.Generator().manual_seed(seed)).reshape(-1, 6)
    values = _values(network, points)
    slack = oracles.spec_slack(values[-1].numpy(), label, None, 0.0)
    adversarial = torch.as_tensor(slack > 0)
    assert int(adversarial.sum()) > 0, "pick an eps with adversarial points, or the test checks nothing"
    covered = torch.zeros(len(points), dtype=torch.bool)
    for domain in domains:
        inside = torch.ones(len(points), dtype=torch.bool)
        for index, neuron, sign in domain.splits:
            inside &= values[index][:, neuron] * sign >= 0
        for i, (low, up) in enumerate(zip(domain.bounds.lower, domain.bounds.upper, strict=True)):
            within = ((values[i] >= low.reshape(1, -1) - 1e-9) & (values[i] <= up.reshape(1, -1) + 1e-9)).all(1)
            assert bool(within[inside].all()), f"a point of sub-domain {domain.splits} leaves its bounds at value {i}"
        covered |= inside
    assert bool(covered[adversarial].all()), "an adversarial point lies in no open sub-domain"


def test_split_depth_and_support():
    assert split_depth(1) == 1 and split_depth(2) == 2 and split_depth(4) == 3
    dense = harder_net(0, inputs=4, width=5, depth=2, classes=3)
    assert supports_split(dense, "scip") and not supports_split(dense, "ortools")
    pool = ev.Network((1, 4, 4), (ir.MaxPool2d(2), ir.Flatten(), ir.Dense(np.ones((2, 4)), np.zeros(2))))
    assert not supports_split(pool, "scip")


def test_scip_interrupt_stops_a_running_solve():
    """A market-split MILP (hard for branch and bound) stops soon after ``interrupt`` from another thread."""
    from encoders.backends import make_backend

    rng = np.random.default_rng(0)
    weights = rng.integers(0, 100, size=(4, 40))
    solver = make_backend("scip")
    x = solver.add_vars([0.0] * 40, [1.0] * 40, integer=True)
    for row in weights:
        solver.add_constraint(x, row.astype(float), "==", float(row.sum() // 2))
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=solver.solve(time_limit=60.0)))
    thread.start()
    time.sleep(0.5)
    deadline = time.perf_counter() + 10.0
    while not solver.interrupt() and time.perf_counter() < deadline and thread.is_alive():
        time.sleep(0.05)
    thread.join(timeout=30.0)
    assert not thread.is_alive(), "interrupt did not stop the solve"
    assert box["result"].raw_status in ("userinterrupt", "infeasible", "optimal")
    if box["result"].raw_status == "userinterrupt":
        assert box["result"].seconds < 30.0


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_threads_rejected(threads):
    case = cached_case(0)
    with pytest.raises(InvalidInputError, match="threads"):
        ev.verify(case.network, case.x, 0.1, threads=threads)
    with pytest.raises(InvalidInputError, match="threads"):
        ev.minimal_distortion(case.network, case.x, threads=threads)


@pytest.mark.parametrize("seed,norm", [(1, "linf"), (1, "l1"), (2, "linf"), (2, "l1")])
def test_split_brackets_the_single_milp_optimum(seed, norm):
    """On 10-16-16-16-4 nets (48 ReLUs, beyond the enumeration oracle) the one-MILP optimum d*
    of the single-threaded search is bracketed by split solves: 0.97 d* is proved robust by
    infeasible sub-MILPs, 1.03 d* yields a re-checked counterexample."""
    network = harder_net(seed, inputs=10, width=16, depth=3, classes=4)
    x = np.full(10, 0.5)
    single = ev.minimal_distortion(network, x, norm, tol=1e-4, time_limit=TIME_LIMIT)
    assert single.status == "optimal", single.reason
    below = ev.verify(network, x, 0.97 * single.upper, norm, threads=2, time_limit=TIME_LIMIT, **NO_ATTACK)
    assert below.status == "robust", below.reason
    assert any(r.stage == "milp" and r.raw_status.startswith("infeasible (sub-domain") for r in below.history)
    above = ev.verify(network, x, 1.03 * single.upper, norm, threads=2, time_limit=TIME_LIMIT, **NO_ATTACK)
    assert above.status == "not_robust", above.reason
    assert above.validated is True and above.distortion <= 1.03 * single.upper + 1e-9
