"""ReLU-phase branch and bound (beta-CROWN style): bounds on split sub-domains are sound,
and the search proves exactly the specs whose unsafe set the exact oracle finds empty."""

from __future__ import annotations

import time

import numpy as np
import oracles
import pytest
import torch

import exactverify as ev
from exactverify import ir
from exactverify.bounds.alpha import alpha_output_lower
from exactverify.bounds.crown import crown_bounds, empty_subdomains
from exactverify.errors import InvalidInputError
from exactverify.specs import Conjunction, OutputSpec
from exactverify.vnncomp.relu_split import relu_split_search, supports
from exactverify.vnncomp.solve import spec_network

TOL = 1e-9


def tiny_net(seed: int, n_in: int = 3, width: int = 6) -> ev.Network:
    rng = np.random.default_rng(seed)
    sizes = [n_in, width, width, 2]
    layers: list[ir.Layer] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [ir.Dense(rng.normal(size=(b, a)) / np.sqrt(a), 0.3 * rng.normal(size=b)), ir.ReLU()]
    return ev.Network((n_in,), layers[:-1], name=f"tiny{seed}")


def relu_values(network: ev.Network) -> list[int]:
    return [i for i, layer in enumerate(network.layers) if isinstance(layer, ir.ReLU)]


def random_splits(network: ev.Network, batch: int, rng) -> dict[int, torch.Tensor]:
    return {i: torch.as_tensor(rng.choice([-1, 0, 0, 1], size=(batch, *network.shapes[i])), dtype=torch.float64)
            for i in relu_values(network)}


def points_in_subdomains(network, region, splits, count=6000):
    """(points (P, B, n), inside (P, B) bool): sampled points and whether they meet each split."""
    points = region.sample(count, torch.Generator().manual_seed(0))
    value = points.reshape(-1, *region.shape)
    inside = torch.ones(points.shape[0] * region.batch_size, dtype=torch.bool)
    values = []
    for index, layer in enumerate(network.layers):
        if index in splits:
            split = splits[index].repeat(points.shape[0], 1)
            inside &= ((split > 0) & (value < 0)).sum(1) == 0
            inside &= ((split < 0) & (value > 0)).sum(1) == 0
        values.append(value)
        value = layer.forward(value)
    values.append(value)
    return values, inside.reshape(points.shape[0], region.batch_size)


@pytest.mark.parametrize("seed", range(4))
def test_split_bounds_hold_on_their_subdomains(seed: int) -> None:
    rng = np.random.default_rng(seed)
    network = tiny_net(seed)
    batch = 6
    center = torch.as_tensor(rng.uniform(-1, 1, size=(batch, 3)))
    region = ev.box(center - 0.8, center + 0.8, shape=(3,))
    splits = random_splits(network, batch, rng)
    lowers, uppers = crown_bounds(network, region, splits=splits)
    tuned = alpha_output_lower(network, region, lowers, uppers, iterations=30, splits=splits)
    values, inside = points_in_subdomains(network, region, splits)
    empty = empty_subdomains(lowers, uppers)
    P = inside.shape[0]
    for b in range(batch):
        mask = inside[:, b]
        if empty[b]:
            assert not bool(mask.any()), "a sub-domain with sampled points was called empty"
            continue
        for index, value in enumerate(values):
            v = value.reshape(P, batch, -1)[mask, b]
            assert bool((v >= lowers[index][b].reshape(-1) - TOL).all()), f"lower bound of value {index}"
            assert bool((v <= uppers[index][b].reshape(-1) + TOL).all()), f"upper bound of value {index}"
        out = values[-1].reshape(P, batch, -1)[mask, b]
        if len(out):
            assert bool((tuned[b] <= out.min(0).values + TOL).all()), "beta-CROWN bound above a sampled output"


def exact_row_min(network: ev.Network, row: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """min of ``row . network(x)`` over the box, by one LP per activation pattern (oracle)."""
    best = np.inf
    box = np.stack([low, high], 1)
    for piece in oracles.enumerate_pieces(network, domain=(low, high)):
        cost = row @ piece.W
        result = oracles._lp(cost, piece.G, piece.h, box)
        if result.status == 0:
            best = min(best, float(result.fun + row @ piece.c))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_search_proves_exactly_the_empty_unsafe_sets(seed: int) -> None:
    network = tiny_net(10 + seed)
    assert supports(network)
    low, high = -np.ones(3), np.ones(3)
    row = np.array([1.0, -1.0])
    true_min = exact_row_min(network, row, low, high)
    for offset, provable in ((-0.05, True), (0.05, False), (1e-6, False)):
        # unsafe set: row . y <= threshold; empty iff threshold < true_min
        spec = OutputSpec((Conjunction(row[None], np.array([true_min + offset])),), 2)
        extended, owner = spec_network(network, spec)
        outcome = relu_split_search(extended, owner, 1, torch.as_tensor(low), torch.as_tensor(high),
                                    time.perf_counter() + 20.0)
        assert outcome.proved == provable, f"offset {offset}: exact min {true_min}, outcome {outcome}"


def test_bad_splits_are_rejected() -> None:
    network = tiny_net(0)
    region = ev.box(torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64), shape=(3,))
    with pytest.raises(InvalidInputError, match="splits"):
        crown_bounds(network, region, splits={2: torch.zeros(3, 6)})
