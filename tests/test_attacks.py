"""PGD warm-start attack: stays in its region, finds attacks on weak nets, exact L1 projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from exactverify.attacks import pgd, pgd_min_distortion, project_l1_box
from exactverify.ir import Dense, Network, ReLU
from exactverify.specs import other_class_wins


def _net(seed: int, sizes=(6, 12, 12, 4)) -> Network:
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [Dense(rng.normal(size=(b, a)) / np.sqrt(a), rng.normal(size=b) * 0.1), ReLU()]
    return Network((sizes[0],), tuple(layers[:-1]))


@pytest.mark.parametrize("seed", range(5))
def test_l1_box_projection_matches_a_generic_solver(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(1, 7)) * 2
    low, high = -rng.uniform(0.1, 1.5, size=(1, 7)), rng.uniform(0.1, 1.5, size=(1, 7))
    eps = 1.3
    ours = project_l1_box(torch.tensor(v), torch.tensor([eps]), torch.tensor(low), torch.tensor(high)).numpy()[0]
    assert np.abs(ours).sum() <= eps + 1e-12 and np.all(ours >= low[0] - 1e-12) and np.all(ours <= high[0] + 1e-12)
    # independent check: split d = p - q with p, q >= 0 and minimise the squared distance
    n = v.shape[1]

    def objective(z):
        return 0.5 * np.sum((z[:n] - z[n:] - v[0]) ** 2)

    cons = [{"type": "ineq", "fun": lambda z: eps - z.sum()},
            {"type": "ineq", "fun": lambda z: (z[:n] - z[n:]) - low[0]},
            {"type": "ineq", "fun": lambda z: high[0] - (z[:n] - z[n:])}]
    best = minimize(objective, np.zeros(2 * n), bounds=[(0, None)] * (2 * n), constraints=cons, method="SLSQP",
                    options={"ftol": 1e-12, "maxiter": 500})
    reference = best.x[:n] - best.x[n:]
    assert np.allclose(ours, reference, atol=1e-4), (ours, reference)


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_pgd_points_stay_in_region_and_domain(norm):
    net = _net(0)
    rng = np.random.default_rng(1)
    center = torch.tensor(rng.uniform(0, 1, size=(8, 6)))
    eps = torch.full((8,), 0.3 if norm == "linf" else 1.0, dtype=torch.float64)
    spec = other_class_wins(0, 4)
    points, _ = pgd(net, center, eps, spec.slack, norm=norm, domain=(torch.zeros(6), torch.ones(6)), steps=30,
                    restarts=2, generator=torch.Generator().manual_seed(0))
    diff = (points - center).abs()
    size = diff.max(1).values if norm == "linf" else diff.sum(1)
    assert torch.all(size <= eps + 1e-9)
    assert torch.all(points >= -1e-12) and torch.all(points <= 1 + 1e-12)


def test_pgd_finds_attacks_on_a_weak_net_and_min_search_brackets():
    net = _net(3)
    rng = np.random.default_rng(4)
    center = torch.tensor(rng.uniform(0.3, 0.7, size=(6, 6)))
    labels = net.forward(center).argmax(1)
    specs = [other_class_wins(int(c), 4, 0.0) for c in labels]

    def score(logits):
        return torch.stack([specs[k].slack(logits[k:k + 1])[0] for k in range(len(specs))])

    def success(logits):
        return score(logits) > 0

    best, points, found = pgd_min_distortion(net, center, score, success, torch.full((6,), 5.0), norm="linf")
    assert found.all(), "a random net is not robust at eps=5 around these points"
    assert success(net.forward(points)).all()
    dist = (points - center).abs().max(1).values
    assert torch.allclose(dist, best)
