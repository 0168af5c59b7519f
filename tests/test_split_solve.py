"""Split solves that split a running sub-domain further for an idle thread (:mod:`exactverify.queries.split_solve`).

To make the race happen on tiny networks, SCIP solves here first wait ``SLOW`` or ``FAST``
seconds at (seeded) random, so that one sub-domain takes long while the other thread runs out
of work, and an idle thread splits a sub-domain after ``STEAL_AFTER = 0.05`` s. Oracles:
the exact activation-pattern enumeration decides the same random queries; sampled adversarial
points of a sub-domain always fall in one of its open halves and inside its bounds; the one-MILP
optimum of a 48-ReLU net is bracketed.
"""

from __future__ import annotations

import random
import time

import numpy as np
import oracles
import pytest
import torch
from conftest import harder_net
from test_queries import NO_ATTACK, TIME_LIMIT, decide_random_queries
from test_split import _values

import exactverify as ev
from exactverify.queries import split_solve
from exactverify.queries.checks import make_query
from exactverify.queries.split import split_further, split_region
from exactverify.queries.stages import _with_spec_rows

pytest.importorskip("pyscipopt", reason="split solves run on SCIP")

#: Seconds SCIP solves wait before they start, in these tests (one or the other at random).
SLOW, FAST = 0.5, 0.1


@pytest.fixture
def slow_solves(monkeypatch):
    """SCIP solves wait SLOW or FAST s first (seeded); idle threads split sub-domains that
    have run 0.05 s."""
    import encoders.backends as backends

    real = backends.make_backend
    pick = random.Random(0)

    def slow(name, *args, **kwargs):
        solver = real(name, *args, **kwargs)
        inner = solver.solve
        delay = pick.choice([SLOW, FAST])

        def solve(**options):
            time.sleep(delay)
            return inner(**options)

        solver.solve = solve
        return solver

    monkeypatch.setattr(backends, "make_backend", slow)
    monkeypatch.setattr(split_solve, "STEAL_AFTER", 0.05)


def _stolen(history) -> bool:
    return any("split further" in r.raw_status for r in history)


def test_split_further_agrees_with_oracle(slow_solves):
    """24 random queries decided as the exact oracle decides them while idle threads split
    running sub-domains further."""
    verdicts = decide_random_queries(bounds_method="interval", threads=2)
    stolen = sum(_stolen(v.history) for v in verdicts)
    # Most of these queries end in CROWN's splits or in a quick counterexample (2-3 race here);
    # the 48-ReLU brackets below race in every robust case.
    assert stolen >= 1, "no query split a running sub-domain"


@pytest.mark.parametrize("seed,norm", [(1, "linf"), (2, "l1")])
def test_split_further_brackets_the_single_milp_optimum(slow_solves, seed, norm):
    """0.97 d* (d* the one-MILP optimum of a 10-16-16-16-4 net) is proved robust and 1.03 d*
    gives a re-checked counterexample, with sub-domains split further while their MILPs run."""
    network = harder_net(seed, inputs=10, width=16, depth=3, classes=4)
    x = np.full(10, 0.5)
    single = ev.minimal_distortion(network, x, norm, tol=1e-4, time_limit=TIME_LIMIT)
    assert single.status == "optimal", single.reason
    below = ev.verify(network, x, 0.97 * single.upper, norm, threads=2, time_limit=TIME_LIMIT, **NO_ATTACK)
    assert below.status == "robust", below.reason
    assert _stolen(below.history), "no sub-domain was split further"
    above = ev.verify(network, x, 1.03 * single.upper, norm, threads=2, time_limit=TIME_LIMIT, **NO_ATTACK)
    assert above.status == "not_robust", above.reason
    assert above.validated is True and above.distortion <= 1.03 * single.upper + 1e-9


@pytest.mark.parametrize("seed,norm", [(0, "linf"), (1, "l1")])
def test_halves_hold_every_adversarial_point_of_their_sub_domain(seed, norm):
    """Each half adds one split of opposite sign to its parent's; every sampled adversarial point
    of the parent sub-domain meets the splits of an open half and lies inside its bounds."""
    network = harder_net(seed, inputs=6, width=10, depth=3, classes=3)
    x = np.full(6, 0.5)
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    query = make_query(network, x, norm, None, label, (0.0, 1.0), ev.DEFAULT_MARGIN)
    spec = query.spec()
    spec_network = _with_spec_rows(query, spec)
    eps = 0.4 if norm == "linf" else 1.2
    region = query.region(eps)
    points = region.sample(20000, torch.Generator().manual_seed(seed)).reshape(-1, 6)
    values = _values(network, points)
    adversarial = torch.as_tensor(oracles.spec_slack(values[-1].numpy(), label, None, 0.0) > 0)
    assert int(adversarial.sum()) > 0, "pick an eps with adversarial points, or the test checks nothing"

    def members(splits) -> torch.Tensor:
        inside = torch.ones(len(points), dtype=torch.bool)
        for index, neuron, sign in splits:
            inside &= values[index][:, neuron] * sign >= 0
        return inside

    parents, _ = split_region(query, spec, spec_network, region, depth=1)
    checked = 0
    for parent in parents:
        made = split_further(query, spec, spec_network, region, parent)
        assert made is not None
        halves, closed = made
        assert len(halves) + closed == 2
        new = [sorted(set(h.splits) - set(parent.splits)) for h in halves]
        assert all(len(n) == 1 and set(parent.splits) <= set(h.splits) for n, h in zip(new, halves, strict=True))
        if len(halves) == 2:
            assert new[0][0][:2] == new[1][0][:2] and new[0][0][2] == -new[1][0][2]
        covered = torch.zeros(len(points), dtype=torch.bool)
        for half in halves:
            inside = members(half.splits)
            for i, (low, up) in enumerate(zip(half.bounds.lower, half.bounds.upper, strict=True)):
                within = ((values[i] >= low.reshape(1, -1) - 1e-9) & (values[i] <= up.reshape(1, -1) + 1e-9)).all(1)
                assert bool(within[inside].all()), f"a point of half {half.splits} leaves its bounds at value {i}"
            covered |= inside
        mine = members(parent.splits) & adversarial
        checked += int(mine.sum())
        assert bool(covered[mine].all()), "an adversarial point of the sub-domain lies in no open half"
    assert checked > 0


def test_closed_halves_close_their_parent():
    """The tree's bookkeeping: a sub-domain is closed when all its halves are, and its queued
    descendants are skipped once it is closed."""
    network = harder_net(0, inputs=6, width=10, depth=3, classes=3)
    x = np.full(6, 0.5)
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    query = make_query(network, x, "linf", None, label, (0.0, 1.0), ev.DEFAULT_MARGIN)
    spec = query.spec()
    domains, _ = split_region(query, spec, _with_spec_rows(query, spec), query.region(0.4), depth=1)
    tree = split_solve.Coordinator(query, spec, _with_spec_rows(query, spec), 0.4, domains, [])
    root = tree.roots[0]
    halves = [split_solve.Node(root.domain, f"{root.label}.{k}", root) for k in (1, 2)]
    grandchild = split_solve.Node(root.domain, f"{root.label}.1.1", halves[0])
    root.children, root.open_children = halves, 2
    halves[0].children, halves[0].open_children = [grandchild], 1
    tree.close(halves[1])
    assert not root.closed and not grandchild.dead()
    tree.close(grandchild)  # closes halves[0], then root
    assert halves[0].closed and root.closed
    assert tree.all_closed() == all(r.closed for r in tree.roots)
    tree.queue = [grandchild, halves[1]] + tree.queue
    assert tree.next_queued() not in (grandchild, halves[1])
