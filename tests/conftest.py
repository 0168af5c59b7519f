"""Shared fixtures: tiny seeded Dense+ReLU networks built directly from IR layers.

``tiny_case`` is parametrized automatically (see :func:`pytest_generate_tests`) over
:data:`TINY_CONFIGS`: 2-D and 3-D inputs, at most 10 ReLUs, with and without an input
domain, one with a non-flat input shape. Each case carries a point ``x`` whose top logit
beats the runner-up by at least :data:`MIN_LOGIT_GAP`, so the label is not a near tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from exactverify import ir


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Run torch single-threaded: the test networks are tiny, and intra-op threads on a
    2-core machine cost far more than they give (and contend with the solvers)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


#: Smallest top-1 logit gap of a case's point (keeps the label away from ties).
MIN_LOGIT_GAP = 0.05


@dataclass(frozen=True)
class TinyCase:
    """A seeded tiny network, a point ``x`` in its input shape, and ``x``'s predicted label."""

    name: str
    network: ir.Network
    x: np.ndarray
    label: int

    @property
    def num_classes(self) -> int:
        return self.network.output_size


# seed, input shape, hidden widths, classes, domain (None, scalar pair or per-coordinate arrays)
TINY_CONFIGS: tuple = (
    (0, (2,), (4, 3), 3, (-1.0, 1.0)),
    (1, (2,), (5,), 3, (0.0, 1.0)),
    (2, (2,), (3, 3, 2), 3, (-1.0, 1.0)),
    (16, (2,), (6, 4), 4, None),
    (4, (3,), (4, 3), 3, (-1.0, 1.0)),
    (5, (3,), (3, 3), 2, (0.0, 1.0)),
    (6, (2,), (4, 4), 2, (-1.0, 1.0)),
    (17, (2,), (5, 3), 4, (-2.0, 2.0)),
    (8, (3,), (5,), 3, None),
    (9, (2,), (3, 3, 2), 3, (-1.0, 1.0)),
    (10, (2,), (4, 3), 3, (np.array([-1.0, 0.0]), np.array([0.5, 2.0]))),
    (11, (1, 2), (4, 3), 3, (0.0, 1.0)),  # non-flat input: Flatten first
)


def _box(input_shape, domain) -> tuple[np.ndarray, np.ndarray]:
    """The domain as arrays of the input shape ([-1, 1] when there is none)."""
    size = int(np.prod(input_shape))
    if domain is None:
        domain = (-1.0, 1.0)
    low, high = (np.broadcast_to(np.asarray(d, dtype=np.float64).reshape(-1), (size,)).reshape(input_shape).copy()
                 for d in domain)
    return low, high


def _random_layers(rng: np.random.Generator, input_shape, hidden, num_classes, low, high) -> list[ir.Layer]:
    """Dense+ReLU layers whose hyperplanes pass through images of random domain points."""
    layers: list[ir.Layer] = [ir.Flatten()] if len(input_shape) > 1 else []
    points = rng.uniform(low.reshape(-1), high.reshape(-1), (64, low.size))
    width = low.size
    for out in (*hidden, num_classes):
        weight = rng.normal(0, 2 / np.sqrt(width), (out, width))
        anchor = points[rng.integers(0, len(points), out)]  # unit i's hyperplane passes through anchor i
        bias = -np.einsum("ij,ij->i", weight, anchor) + rng.normal(0, 0.05, out)
        layers += [ir.Dense(weight, bias), ir.ReLU()]
        points = np.maximum(points @ weight.T + bias, 0.0)
        width = out
    return layers[:-1]  # no ReLU on the logits


def tiny_net(seed: int, input_shape=(2,), hidden=(4, 3), num_classes: int = 3, domain=(-1.0, 1.0),
             name: str | None = None, min_share: float = 0.05) -> ir.Network:
    """A random Dense+ReLU network on which every class wins on >= ``min_share`` of the domain.

    Redraws (from the same seeded generator) until 2000 uniform domain samples show each
    class winning often enough, so decision boundaries cross the domain.
    """
    rng = np.random.default_rng(seed)
    low, high = _box(input_shape, domain)
    net_domain = None if domain is None else (low, high)
    for _ in range(200):
        layers = _random_layers(rng, input_shape, hidden, num_classes, low, high)
        net = ir.Network(tuple(input_shape), tuple(layers), net_domain, name or f"tiny{seed}")
        samples = rng.uniform(low, high, (2000, *input_shape))
        wins = np.bincount(net.forward(samples).numpy().argmax(1), minlength=num_classes) / len(samples)
        if wins.min() >= min_share:
            return net
    raise RuntimeError(f"no network with every class winning found for seed {seed}")


def point_with_gap(network: ir.Network, seed: int, min_gap: float = MIN_LOGIT_GAP) -> np.ndarray:
    """A random point of the domain (or of [-1, 1]^n) whose top-1 logit gap is >= ``min_gap``."""
    rng = np.random.default_rng(10_000 + seed)
    if network.input_domain is not None:
        low, high = network.input_domain
    else:
        low, high = -np.ones(network.input_shape), np.ones(network.input_shape)
    xs = rng.uniform(low, high, (1000, *network.input_shape))
    logits = np.sort(network.forward(xs).numpy().reshape(len(xs), -1), axis=1)
    good = np.flatnonzero(logits[:, -1] - logits[:, -2] >= min_gap)
    if len(good):
        return xs[good[0]]
    raise RuntimeError(f"no point with logit gap {min_gap} found for {network.name}")


def make_case(index: int) -> TinyCase:
    """The ``index``-th seeded case of :data:`TINY_CONFIGS`."""
    seed, shape, hidden, classes, domain = TINY_CONFIGS[index]
    net = tiny_net(seed, shape, hidden, classes, domain)
    x = point_with_gap(net, seed)
    label = int(np.argmax(net.forward(x[None]).numpy()))
    return TinyCase(f"tiny{seed}", net, x, label)


def no_adversarial_net() -> ir.Network:
    """On the domain [0, 1]^2 class 0 beats classes 1 and 2 by >= 0.5 (no adversarial point)."""
    rng = np.random.default_rng(123)
    hidden = ir.Dense(rng.normal(0, 0.1, (3, 2)), rng.normal(0, 0.1, 3))
    logits = ir.Dense(rng.uniform(-0.05, 0.05, (3, 3)), np.array([1.0, 0.0, 0.0]))
    return ir.Network((2,), (hidden, ir.ReLU(), logits), (np.zeros(2), np.ones(2)), "no_adversarial")


def harder_net(seed: int = 0, inputs: int = 20, width: int = 40, depth: int = 3, classes: int = 5) -> ir.Network:
    """A larger random ReLU network (domain [0, 1]) that no solver finishes in milliseconds."""
    return tiny_net(seed, (inputs,), (width,) * depth, classes, (0.0, 1.0), name=f"harder{seed}", min_share=0.0)


_CASES: dict[int, TinyCase] = {}


def cached_case(index: int) -> TinyCase:
    if index not in _CASES:
        _CASES[index] = make_case(index)
    return _CASES[index]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize any test asking for ``tiny_case_index`` over all seeded tiny cases."""
    if "tiny_case_index" in metafunc.fixturenames:
        metafunc.parametrize("tiny_case_index", range(len(TINY_CONFIGS)),
                             ids=[f"tiny{cfg[0]}" for cfg in TINY_CONFIGS])


@pytest.fixture
def tiny_case(tiny_case_index: int) -> TinyCase:
    """One seeded tiny case (parametrized over every entry of TINY_CONFIGS)."""
    return cached_case(tiny_case_index)


@pytest.fixture(scope="session")
def tiny_cases() -> list[TinyCase]:
    """All seeded tiny cases."""
    return [cached_case(i) for i in range(len(TINY_CONFIGS))]
