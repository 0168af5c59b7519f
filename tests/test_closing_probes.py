"""The Anderson et al. ReLU cut of ``benchmarks/closing_probes.py``: valid on the ReLU's graph, and it cuts."""

from __future__ import annotations

import numpy as np
from benchmark_loader import load_benchmark


def test_the_most_violated_cut_holds_on_every_point_of_the_relu_graph_and_cuts_fractional_points():
    cut = load_benchmark("closing_probes").most_violated_cut
    rng = np.random.default_rng(0)
    cut_off = 0
    for _ in range(500):
        n = int(rng.integers(1, 8))
        w, b = rng.normal(size=n), float(rng.normal())
        low = rng.uniform(-1, 0, n)
        up = low + rng.uniform(0.01, 2, n)
        # the subset comes from a fractional LP point...
        inside, coef_z, rhs, violation = cut(rng.uniform(low, up), float(rng.uniform(0, 3)), float(rng.uniform()),
                                             w, b, low, up)
        cut_off += violation > 0
        # ...and the inequality must hold at every (x, max(0, w.x + b), [w.x + b > 0]) with x in the box
        x = rng.uniform(low, up, size=(50, n))
        pre = x @ w + b
        y, z = np.maximum(pre, 0.0), (pre > 0).astype(float)
        lhs = y - x[:, inside] @ w[inside] - coef_z * z
        assert np.all(lhs <= rhs + 1e-12)
        # the corners too: the extreme points of the box
        corners = np.where(rng.random((20, n)) < 0.5, low, up)
        pre = corners @ w + b
        lhs = np.maximum(pre, 0.0) - corners[:, inside] @ w[inside] - coef_z * (pre > 0)
        assert np.all(lhs <= rhs + 1e-12)
    assert cut_off > 250  # most random fractional points violate some member of the family


def _harder_query(seed: int, norm: str, eps: float, round_centre: bool = False):
    """A targeted query on a random 6-12-12-3 net; ``round_centre`` puts every pixel of the centre
    on the domain's edge (one-sided pixels, the case ``l1-lean`` changes)."""
    from conftest import harder_net, point_with_gap

    import exactverify as ev
    from exactverify.queries.checks import make_query

    network = harder_net(seed, inputs=6, width=12, depth=2, classes=3)
    x = point_with_gap(network, seed)
    if round_centre:
        x = np.round(x)
    label = int(np.argmax(network.forward(x[None]).numpy()))
    query = make_query(network, x, norm, (label + 1) % 3, None, (0.0, 1.0), ev.DEFAULT_MARGIN)
    return network, query, query.region(eps)


def test_spec_lp_bounds_hold_at_every_sampled_point_that_meets_the_spec_and_only_narrow():
    """The ``spec-lp`` variant's bounds need only hold where ``A y <= b``: sampled points of the
    region that meet the spec stay within them; they never widen the bounds they start from,
    and on some regions they do narrow them."""
    import torch

    from exactverify.bounds import bounds

    module = load_benchmark("closing_probes")
    narrowed = checked = 0
    for seed in range(6):
        for norm, eps in (("linf", 0.25), ("l1", 1.0)):
            network, query, region = _harder_query(seed, norm, eps)
            conj = query.spec().disjuncts[0]
            start = bounds(network, region, method="crown")
            stats: dict = {}
            tight = module.spec_lp_tighten(network, region, start, conj, stats)
            for a, b in zip(start.lower, tight.lower, strict=True):
                assert torch.all(b >= a)
            for a, b in zip(start.upper, tight.upper, strict=True):
                assert torch.all(b <= a)
            narrowed += stats["spec_lp_moved"] > 0
            points = region.sample(4000, torch.Generator().manual_seed(seed))[:, 0]
            values = [points]
            for layer in network.layers:
                values.append(layer.forward(values[-1]))
            meets = torch.as_tensor((values[-1].numpy() @ conj.A.T <= conj.b).all(1))
            for value, low, up in zip(values, tight.lower, tight.upper, strict=True):
                inside = (value >= low - 1e-9) & (value <= up + 1e-9)
                assert bool(inside.reshape(len(points), -1).all(1)[meets].all())
            checked += int(meets.sum())
    assert narrowed >= 3 and checked > 100


def test_the_lean_l1_ball_decides_like_the_epigraph():
    """``l1-lean`` (no epigraph variable for one-sided pixels) gives SCIP the same answers."""
    import encoders.milp as milp
    from encoders.backends import Status, make_backend
    from exactverify.bounds import bounds

    module = load_benchmark("closing_probes")
    plain = milp.encode_region_counted
    answers = {"plain": [], "lean": []}
    try:
        for variant in ("plain", "lean"):
            if variant == "lean":
                module.install_lean_l1()
            for seed in range(8):
                for eps in (0.2, 0.6, 1.5):
                    network, query, region = _harder_query(seed, "l1", eps, round_centre=True)
                    solver = make_backend("scip")
                    milp.encode_query(solver, network, region, query.spec(),
                                      bounds(network, region, method="crown"))
                    status = solver.solve(time_limit=30).status
                    assert status in (Status.OPTIMAL, Status.FEASIBLE, Status.INFEASIBLE)
                    answers[variant].append(status == Status.INFEASIBLE)
    finally:
        milp.encode_region_counted = plain
    assert answers["plain"] == answers["lean"]
    assert 0 < sum(answers["plain"]) < len(answers["plain"])  # both answers occur
