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
