"""Polishing counterexamples (:mod:`exactverify.queries.polish`) against the piece-enumeration oracle.

A polished point must be a re-checked counterexample no farther than the smallest one in
the linear piece of the point it started from (the LP that polishing solves first, here
solved by the oracle's own HiGHS LP), and no nearer than the oracle's exact minimum.
"""

from __future__ import annotations

import numpy as np
import oracles
import pytest
import torch
from conftest import cached_case

import exactverify as ev
from exactverify.queries.checks import make_query
from exactverify.queries.polish import polish
from exactverify.queries.stages import accept_point

MARGIN = ev.DEFAULT_MARGIN
#: LP tolerance on distance comparisons with the oracle.
LP_TOL = 1e-6
#: Random counterexamples polished per case.
STARTS = 3


def piece_minimum(network, x0, norm, label, point, domain, margin: float = MARGIN) -> float:
    """The oracle's smallest distortion within the linear piece and adversarial polyhedron of ``point``
    (the polyhedron where the other class wins by ``margin``)."""
    flat = point.reshape(-1)
    bounds = oracles._bounds(domain, flat.size)
    pieces = [p for p in oracles.enumerate_pieces(network, domain) if np.all(p.G @ flat <= p.h + 1e-9)]
    assert pieces, "the point lies in no piece"
    best = np.inf
    for piece in pieces:
        for C, d in oracles.adversarial_polyhedra(piece.W.shape[0], label, None, margin):
            if not np.all(C @ (piece.W @ flat + piece.c) <= d + 1e-9):
                continue
            G = np.vstack([piece.G, C @ piece.W])
            h = np.concatenate([piece.h, d - C @ piece.c])
            solution = oracles._distance_lp(x0.reshape(-1), norm, G, h, bounds, None)
            if solution is not None:
                best = min(best, solution[1])
    return best


def random_counterexamples(case, norm, count, rng):
    """Re-checked counterexamples (margin kept with room) far from the oracle's optimum."""
    network = case.network
    low, high = network.input_domain if network.input_domain is not None else (-3.0, 3.0)
    points = rng.uniform(low, high, size=(4000, *network.input_shape))
    logits = network.forward(torch.as_tensor(points)).numpy()
    others = np.delete(logits, case.label, axis=1).max(1)
    keep = points[others - logits[:, case.label] > MARGIN + 1e-3]
    return keep[:count]


@pytest.mark.parametrize("norm", ["linf", "l1"])
@pytest.mark.parametrize("index", range(6))
def test_polished_point_lies_between_the_optimum_and_its_piece_minimum(index, norm):
    case = cached_case(index)
    domain = case.network.input_domain
    query = make_query(case.network, case.x, norm, None, None, domain, MARGIN, None)
    optimum = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    starts = random_counterexamples(case, norm, STARTS, np.random.default_rng(index))
    assert len(starts) > 0
    improved = 0
    for start in starts:
        found = accept_point(query, start, np.inf, "test start")
        assert found.outcome == "not_robust"
        ceiling = piece_minimum(case.network, case.x, norm, case.label, start, domain)
        polished = polish(query, found)
        assert polished.outcome == "not_robust" and polished.ir_ok
        dist = oracles.distance(polished.point.reshape(-1), case.x.reshape(-1), norm)
        assert abs(dist - polished.distortion) <= 1e-12
        assert optimum - LP_TOL <= polished.distortion <= min(ceiling, found.distortion) + LP_TOL
        improved += polished.distortion < found.distortion - LP_TOL
    assert improved > 0, "polishing never shrank a random counterexample"


def test_polish_leaves_non_counterexamples_alone():
    case = cached_case(0)
    query = make_query(case.network, case.x, "linf", None, None, case.network.input_domain, MARGIN, None)
    assert polish(query, None) is None
    centre = accept_point(query, case.x, 0.0, "centre")
    assert centre.outcome != "not_robust" and polish(query, centre) is centre


def test_probes_close_in_below_the_upper_bound_then_fall_back_to_bisection():
    from exactverify.queries.distortion import CLOSING_STEP_FACTOR, FREE_MISSES, next_probe

    lower, upper, tol = 1.0, 2.0, 1e-3
    first = next_probe(lower, upper, tol, 0)
    assert lower < first < upper and upper - first == pytest.approx(CLOSING_STEP_FACTOR * tol)
    assert upper - first <= tol  # one robust answer at the first probe ends the search
    steps = [upper - next_probe(lower, upper, tol, misses) for misses in range(14)]
    assert all(step == pytest.approx(steps[0]) for step in steps[: FREE_MISSES + 1])  # a miss may be the polish's
    doubling = steps[FREE_MISSES:]
    assert all(b == pytest.approx(2 * a) for a, b in zip(doubling[:8], doubling[1:9], strict=True))
    assert steps[-1] == pytest.approx((upper - lower) / 2)  # capped at the midpoint
    assert next_probe(lower, upper, tol, float("inf")) == pytest.approx(1.5)


def test_search_ends_when_only_robust_answers_remain_below_an_unknown_probe(monkeypatch):
    """Without a time limit, two probes that end unknown followed by robust answers below them must
    not make the search bisect forever towards the lower one: it stops with status unknown."""
    import exactverify.queries.distortion as distortion
    from exactverify.queries.stages import Finding

    case = cached_case(0)
    calls = []

    def fake_exact(query, eps, **_):
        calls.append(eps)
        assert len(calls) < 200, "the search does not end"
        return Finding("unknown", "fake timeout") if len(calls) <= 2 else Finding("robust", "fake proof")

    monkeypatch.setattr(distortion, "solve_exact", fake_exact)
    result = ev.minimal_distortion(case.network, case.x, "linf", tol=1e-3)
    ceiling = min(calls[:2])
    assert result.status == "unknown" and result.reason == "fake timeout"
    assert result.lower <= ceiling < result.upper - 1e-3 and ceiling - result.lower <= 1e-3


@pytest.mark.parametrize("norm", ["linf", "l1"])
@pytest.mark.parametrize("index", range(6))
def test_wide_rounds_never_end_above_the_lp_rounds_nor_below_the_optimum(index, norm):
    """The neighbourhood search (freed neurons) starts where the LP rounds stop, so it ends no
    farther than them; its points are re-checked counterexamples, never nearer than the optimum."""
    case = cached_case(index)
    query = make_query(case.network, case.x, norm, None, None, case.network.input_domain, MARGIN, None)
    optimum = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    for start in random_counterexamples(case, norm, STARTS, np.random.default_rng(100 + index)):
        found = accept_point(query, start, np.inf, "test start")
        narrow = polish(query, found, wide=0)
        wide = polish(query, found)
        assert wide.outcome == "not_robust" and wide.ir_ok
        assert optimum - LP_TOL <= wide.distortion <= narrow.distortion + LP_TOL


def test_nearest_to_switching_marks_the_unstable_neurons_closest_to_zero_relative_to_their_range():
    from exactverify.bounds import BoundsResult
    from exactverify.ir import Dense, Network, ReLU
    from exactverify.queries.polish import nearest_to_switching, pattern_bounds

    network = Network((4,), (Dense(np.eye(4), np.zeros(4)), ReLU(), Dense(np.eye(4)[:2], np.zeros(2))))
    low = [torch.tensor([[-1.0, -1.0, -1.0, -1.0]]), torch.tensor([[-1.0, -10.0, 0.5, -1.0]]),
           torch.tensor([[0.0, 0.0, 0.5, 0.0]]), torch.tensor([[-1.0, -1.0]])]
    up = [torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[1.0, 10.0, 2.0, 1.0]]),
          torch.tensor([[1.0, 10.0, 2.0, 1.0]]), torch.tensor([[1.0, 10.0]])]
    net_bounds = BoundsResult(network, "test", tuple(low), tuple(up))
    values = [None, np.array([0.3, -0.5, 0.6, -0.2]), None]
    # relative distance to 0: 0.15, 0.025, (stable), 0.1
    masks = nearest_to_switching(net_bounds, values, 2)
    assert masks[0] is None and masks[2] is None
    assert masks[1].tolist() == [False, True, False, True]
    assert nearest_to_switching(net_bounds, values, 10)[1].tolist() == [True, True, False, True]
    assert not nearest_to_switching(net_bounds, values, 0)[1].any()
    fixed = pattern_bounds(net_bounds, values, 0.0, masks)
    assert fixed.lower[1][0].tolist() == [0.0, -10.0, 0.5, -1.0]  # neuron 0 pinned active, 1 and 3 free
    assert fixed.upper[1][0].tolist() == [1.0, 10.0, 2.0, 1.0]


def test_a_point_short_of_the_margin_is_lifted_from_beyond_the_narrow_polishing_radius(monkeypatch):
    """Class 1 leads by 1e-4 * x: at x = 1e-3 (distortion 1.001 from the centre -1) it wins by
    1e-7, short of the margin 1e-5, which it first meets at x = 0.1 (distortion 1.1, beyond
    ``(1 + RADIUS_SLACK) * 1.001``): only the wider ``SHORT_RADIUS_SLACK`` region reaches it."""
    import exactverify.queries.polish as polish_module
    from exactverify.queries.stages import meets_margin

    linear = torch.nn.Linear(1, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0], [1e-4]]))
        linear.bias.zero_()
    query = make_query(linear, np.array([-1.0]), "linf", 1, None, None, 1e-5, None)
    short = accept_point(query, np.array([1e-3]), np.inf, "test start")
    assert short.outcome == "not_robust" and not meets_margin(query, short)
    assert 1.1 > (1 + polish_module.RADIUS_SLACK) * short.distortion
    lifted = polish(query, short)
    # polishing asks for MARGIN_HEADROOM more, which costs 1e4 * headroom of distortion on this net
    slack = 1e4 * 2 * polish_module.MARGIN_HEADROOM
    assert meets_margin(query, lifted) and 1.1 - 1e-9 <= lifted.distortion <= 1.1 + slack
    monkeypatch.setattr(polish_module, "SHORT_RADIUS_SLACK", polish_module.RADIUS_SLACK)
    assert not meets_margin(query, polish(query, short))
