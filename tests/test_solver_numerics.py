"""Solver numerics that once produced a wrong "robust", kept as regression tests.

The 784-24-24-24-10 zoo network at a uniformly random input (seed 0), untargeted, L1: a
re-checked counterexample lies at L1 distance 0.3663, yet SCIP 10.0.2 declared the decision
MILP at eps 0.37-0.58 infeasible when its bounds were exactly the CROWN bounds (the
first layer's bounds are exact over an L1 ball, so the counterexample touches them):
its strong dual reductions in presolve removed the last feasible point. The encoder now
pads every bound outward (``encoders.milp.BOUND_PADDING``), which only relaxes the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import exactverify as ev
from encoders.backends import make_backend
from encoders.milp import BOUND_PADDING, encode_query
from encoders.milp.network import flat_bounds, padded_bounds
from exactverify import zoo
from exactverify.bounds import bounds
from exactverify.queries.checks import make_query

#: A re-checked counterexample of the regression query lies at this L1 distance (found by
#: SCIP with presolve off, and by polishing the attack's point).
KNOWN_COUNTEREXAMPLE_DISTANCE = 0.3663


@pytest.fixture(scope="module")
def regression_query():
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    x = np.random.default_rng(0).uniform(0.0, 1.0, 784)
    return make_query(network, x, "l1", None, None, (0.0, 1.0), ev.DEFAULT_MARGIN, None)


@pytest.mark.parametrize("eps", [0.37, 0.4, 0.5])
def test_verify_finds_the_counterexample_scip_once_dropped(regression_query, eps):
    query = regression_query
    verdict = ev.verify(query.network, query.x, eps, norm="l1", domain=(0.0, 1.0), time_limit=60)
    assert verdict.status == "not_robust", verdict.reason
    point = np.asarray(verdict.counterexample, dtype=np.float64)
    logits = query.network.forward(torch.as_tensor(point)[None])[0].numpy()
    assert np.delete(logits, query.label).max() > logits[query.label]
    assert np.abs(point - query.x).sum() <= eps + 1e-9 and point.min() >= 0 and point.max() <= 1


def test_the_padded_decision_milp_is_feasible(regression_query):
    query = regression_query
    region = query.region(0.4)
    net_bounds = bounds(query.network, region, method="crown")
    solver = make_backend("scip")
    encode_query(solver, query.network, region, query.spec(), net_bounds)
    assert solver.solve(time_limit=60).status.has_solution


def test_padding_widens_without_crossing_zero(regression_query):
    query = regression_query
    net_bounds = bounds(query.network, query.region(0.4), method="crown")
    low0, up0 = flat_bounds(net_bounds, 0)
    box = padded_bounds(net_bounds, 0)  # the input box is the region's own, never padded
    assert np.array_equal(box[0], low0) and np.array_equal(box[1], up0)
    for i in range(1, len(query.network) + 1):
        low, up = flat_bounds(net_bounds, i)
        wide_low, wide_up = padded_bounds(net_bounds, i)
        assert np.all(wide_low <= low) and np.all(wide_up >= up)
        assert np.all(wide_low[low >= 0] >= 0) and np.all(wide_up[up <= 0] <= 0)
        moved = (low < 0) | (up > 0)
        assert np.all(low[low < 0] - wide_low[low < 0] >= BOUND_PADDING * (1 + np.abs(low[low < 0])) * (1 - 1e-9))
        assert moved.any()


def random_query(seed: int, network):
    """Queries of ``benchmarks/solver_soundness.py`` whose exact-bound MILPs SCIP called infeasible."""
    rng = np.random.default_rng(seed)
    kind = ("uniform", "binary", "sparse")[seed % 3]
    if kind == "uniform":
        x = rng.uniform(0, 1, 784)
    elif kind == "binary":
        x = (rng.uniform(0, 1, 784) < 0.2).astype(np.float64)
    else:
        x = np.clip(rng.normal(0, 1, 784), 0, 1) * (rng.uniform(0, 1, 784) < 0.3)
    norm = ("l1", "linf")[(seed // 3) % 2]
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    target = None if seed % 2 == 0 else int(np.random.default_rng(10_000 + seed).choice(
        [k for k in range(10) if k != label]))
    return make_query(network, x, norm, target, None, (0.0, 1.0), ev.DEFAULT_MARGIN, None)


@pytest.mark.parametrize("seed", [3, 9, 12, 22, 29])
def test_decision_milps_keep_a_known_counterexample(regression_query, seed):
    """Each query had a wrong "infeasible" with exact bounds (both MILP forms, at d (1 + 1e-2))."""
    from exactverify.queries.polish import polish
    from exactverify.queries.stages import SLACK_CUTOFF, attack

    query = random_query(seed, regression_query.network)
    found = [f for f in attack(query, [query.max_radius() * 2.0 ** -k for k in range(16)]) if f]
    best = polish(query, min(found, key=lambda f: f.distortion))
    region = query.region(best.distortion * (1 + 1e-2))
    net_bounds = bounds(query.network, region, method="crown")
    solver = make_backend("scip")
    encode_query(solver, query.network, region, query.spec(), net_bounds)
    assert solver.solve(time_limit=60).status.has_solution
    if query.target is not None:
        solver = make_backend("scip")
        encoding = encode_query(solver, query.network, region, query.spec(), net_bounds, slack=True)
        solver.set_objective([encoding.slack], [1.0], minimize=False)
        assert solver.solve(time_limit=60, cutoff=-SLACK_CUTOFF, stop_at=0.0).status.has_solution


SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist" / "mnist.npz"


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason=f"shared MNIST data absent at {SHARED_MNIST}")
def test_mnist_image_3_target_2_is_not_robust_below_the_wrong_optimum():
    """A run before the padding fix (commit 5632e72's ``minimal_distortion_fast60``) called the
    minimal L-inf distortion of MNIST test image 3 to target 2 0.0765 (wrong optima on all 9
    targets of that image, ``benchmarks/results/bracket_agreement.md``); a re-checked
    counterexample lies at 0.0743. At 0.0746, which that engine proved robust, there must be one."""
    _, _, x_test, _ = zoo.load_mnist(SHARED_MNIST)
    x = np.asarray(x_test[3], dtype=np.float64).reshape(-1)
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    verdict = ev.verify(network, x, eps=0.0746, norm="linf", target=2, domain=(0.0, 1.0), time_limit=60)
    assert verdict.status == "not_robust" and verdict.validated, verdict.reason
    point = np.asarray(verdict.counterexample, dtype=np.float64).reshape(-1)
    with torch.no_grad():
        logits = zoo.mnist_network().double()(torch.as_tensor(point)[None])[0].numpy()
    assert logits[2] > np.delete(logits, 2).max()
    assert np.abs(point - x).max() <= 0.0746 + 1e-9 and point.min() >= 0 and point.max() <= 1


def large_valued_net(eps: float = 1e4, gap: float = 1e-4) -> tuple[ev.Network, np.ndarray]:
    """A 2-9-3 net whose two leading logits grow to ~2e4 over the eps-ball of 0 and differ by at
    most 3e-4: y0 = 1 + |z1| + |z2|, y1 = 1 - gap + |z1| + |z2| + s relu(z1 - eps/2) (both |.| as
    ReLU pairs), s = 8 gap / eps. Class 1 beats class 0 by 3e-4 > margin at z = (eps, 0)."""
    from exactverify import ir

    w1 = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]] * 2 + [[1.0, 0]])
    b1 = np.zeros(9)
    b1[8] = -eps / 2
    w2 = np.zeros((3, 9))
    w2[0, :4] = w2[1, 4:8] = 1.0
    w2[1, 8] = 8 * gap / eps
    layers = [ir.Dense(w1, b1), ir.ReLU(), ir.Dense(w2, np.array([1.0, 1.0 - gap, -5.0]))]
    return ev.Network((2,), layers, name="large_valued"), np.array([eps, 0.0])


def test_a_milp_infeasible_at_values_beyond_the_margin_resolution_is_no_proof(monkeypatch):
    """SCIP's slack-form decision called this ball robust (its tolerances at values ~2e4 swamp a 3e-4
    lead). Beyond SLACK_FORM_MAX_VALUE the decision takes the constraint form, which finds the point;
    forced back to the slack form, the MARGIN_RESOLUTION guard makes its answer unknown and says why;
    z3 (exact) finds the point. At a margin above the lead the constraint form ends unknown (its
    points within tolerance fail the re-check), the slack form proves it and the guard lets it."""
    from exactverify.queries import stages

    network, witness = large_valued_net()
    logits = network.forward(torch.as_tensor(witness)[None])[0]
    assert float(logits[1] - logits[0]) > 2e-4  # the ball is not robust at the default margin 1e-5
    scip = ev.verify(network, np.zeros(2), 1e4, label=0, attack_first=False, time_limit=30)
    assert scip.status == "not_robust" and scip.validated
    monkeypatch.setattr(stages, "SLACK_FORM_MAX_VALUE", math.inf)
    slack = ev.verify(network, np.zeros(2), 1e4, label=0, attack_first=False, time_limit=30)
    assert slack.status == "unknown"
    assert "not a proof: the network's values reach" in slack.reason and "MARGIN_RESOLUTION" in slack.reason
    split = ev.verify(network, np.zeros(2), 1e4, label=0, attack_first=False, time_limit=30, threads=2)
    assert split.status == "unknown" and "sub-domains" in split.reason and "not a proof" in split.reason
    monkeypatch.undo()
    exact = ev.verify(network, np.zeros(2), 1e4, label=0, attack_first=False, backend="z3", time_limit=30)
    assert exact.status == "not_robust" and exact.validated
    resolvable = stages.MARGIN_RESOLUTION * 4e4 * 2  # above the values' resolution, and above the 3e-4 lead
    above = ev.verify(network, np.zeros(2), 1e4, label=0, margin=resolvable, attack_first=False, time_limit=30)
    assert above.status == "unknown"  # no point beats 8e-4; the constraint form's tolerant points fail the re-check
    monkeypatch.setattr(stages, "SLACK_FORM_MAX_VALUE", math.inf)
    assert ev.verify(network, np.zeros(2), 1e4, label=0, margin=resolvable, attack_first=False,
                     time_limit=30).status == "robust"  # the slack form proves it, and the guard accepts


def test_the_margin_resolution_guard_fires_only_beyond_its_ratio():
    """``unresolvable_margin`` compares the margin with MARGIN_RESOLUTION times the largest |bound|."""
    from exactverify.queries.checks import make_query
    from exactverify.queries.stages import MARGIN_RESOLUTION, unresolvable_margin

    network, _ = large_valued_net()
    for eps, margin in [(1e4, 1e-5), (1e4, 1e-3), (1.0, 1e-5)]:
        query = make_query(network, np.zeros(2), "linf", None, 0, None, margin)
        net_bounds = bounds(network, query.region(eps), method="crown")
        largest = max(float(t.abs().max()) for t in (*net_bounds.lower, *net_bounds.upper))
        assert (unresolvable_margin(query, net_bounds) is None) == (margin >= MARGIN_RESOLUTION * largest)
    digits = ev.load(zoo.digits_network(), input_shape=(64,))  # values ~1e2: the default margin resolves
    query = make_query(digits, zoo.load_digits_data()[2][0], "linf", None, None, (0.0, 1.0), ev.DEFAULT_MARGIN)
    assert unresolvable_margin(query, bounds(digits, query.region(0.2), method="crown")) is None
    query = make_query(network, np.zeros(2), "linf", None, 0, None, ev.DEFAULT_MARGIN)
    assert "values reach 2e+04" in unresolvable_margin(query, bounds(network, query.region(1e4), method="crown"))


def test_a_slowly_growing_lead_keeps_the_lower_bound_below_a_known_counterexample():
    """Margin 1e-3 (resolvable at these values): the lead grows by 8e-8 per unit of z1, and a point at
    distance 18750.005 beats the margin in float64; the bisection's lower bound must not pass it. The
    slack-form decision (values 7.5e4 > SLACK_FORM_MAX_VALUE) reported [18750.0115, 18750.0125]."""
    network, _ = large_valued_net()
    point = np.array([18750.005, 0.0])
    logits = network.forward(torch.as_tensor(point)[None])[0]
    assert float(logits[1] - logits[0]) >= 1e-3 and float(logits[1] - logits[2]) >= 1e-3
    result = ev.minimal_distortion(network, np.zeros(2), label=0, target=1, margin=1e-3, time_limit=60,
                                   domain=(-3e4, 3e4))
    assert result.lower <= 18750.005 <= result.upper + 0.01


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason=f"shared MNIST data absent at {SHARED_MNIST}")
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.25), ("l1", 30.0)])
def test_the_mnist_benchmark_regions_resolve_the_default_margin(norm, eps):
    """The minimal-distortion benchmark's upper bounds reach 0.219 (L-inf) and 29.2 (L1); on the
    10 images' regions of those sizes the network's values stay where MARGIN_RESOLUTION accepts a
    MILP's infeasible at the default margin and where decisions keep the slack form, so neither
    guard changes the benchmark's engine."""
    from exactverify.queries.stages import SLACK_FORM_MAX_VALUE, largest_value, unresolvable_margin

    _, _, x_test, _ = zoo.load_mnist(SHARED_MNIST)
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    for image in range(10):
        query = make_query(network, np.asarray(x_test[image], dtype=np.float64).reshape(-1), norm, None, None,
                           (0.0, 1.0), ev.DEFAULT_MARGIN, None)
        region_bounds = bounds(network, query.region(eps), method="crown")
        assert unresolvable_margin(query, region_bounds) is None
        assert largest_value(region_bounds) <= SLACK_FORM_MAX_VALUE
