"""Soundness and tightness of the bound methods (interval, CROWN, LP, forward, alpha-CROWN).

The oracle everywhere is the float64 reference forward pass of the IR: every bound must
contain the value of every sampled input point, layer by layer. Exactness checks use
independent computations (vertex enumeration, the affine map read off forward passes,
scipy's LP solver on the L1 ball).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import exactverify as ev
from exactverify import ir
from exactverify.bounds.affine import affine_matrix
from exactverify.bounds.crown import concretize, crown_bounds
from exactverify.bounds.linearize import relax_elementwise
from exactverify.bounds.lp import LP_METHODS, lp_bounds, safe_minimum
from exactverify.errors import InvalidInputError

#: A sampled value may exceed a bound by this much: float64 rounding of the forward pass
#: and of the bounds themselves (both ~1e-15 relative on these small networks).
SAMPLE_TOL = 1e-9
SAMPLES = 1500
BATCH = 3
METHODS = ("interval", "crown", "lp", "forward", "alpha")
#: LPs per value and region in the soundness sweep (each LP costs ~10 ms of scipy overhead).
LP_NEURONS = 4




# ------------------------------------------------------------------ architectures
def _dense(rng, n_in: int, n_out: int, gain: float = 1.0) -> ir.Dense:
    return ir.Dense(gain * rng.normal(size=(n_out, n_in)) / np.sqrt(n_in), 0.2 * rng.normal(size=n_out))


def mlp_relu(rng) -> ev.Network:
    return ev.Network((4,), [_dense(rng, 4, 10), ir.ReLU(), _dense(rng, 10, 10), ir.ReLU(), _dense(rng, 10, 3)],
                      name="mlp_relu")


def mlp_leaky_clamp(rng) -> ev.Network:
    return ev.Network((4,), [_dense(rng, 4, 10), ir.LeakyReLU(0.1), _dense(rng, 10, 10), ir.Clamp(-0.4, 0.5),
                             _dense(rng, 10, 8), ir.Clamp(-0.2, 0.2), _dense(rng, 8, 3)], name="mlp_leaky_clamp")


def conv_net(rng) -> ev.Network:
    """Strided conv (needs output_padding backwards), padded max-pool, unfolded batch
    norm, grouped conv, average pool, flatten, dense. (Dilation: see the affine chain
    test; torch's dilated float64 conv is very slow on CPU.)"""
    layers = [
        ir.Conv2d(rng.normal(size=(3, 2, 3, 3)) / 3, 0.1 * rng.normal(size=3), stride=2, padding=1),  # (3,4,4)
        ir.ReLU(),
        ir.MaxPool2d(kernel=2, stride=1, padding=1),  # (3,5,5)
        ir.ElementwiseAffine(rng.uniform(0.5, 1.5, size=(3, 1, 1)), 0.1 * rng.normal(size=(3, 1, 1))),
        ir.Conv2d(rng.normal(size=(6, 1, 2, 2)) / 2, 0.1 * rng.normal(size=6), groups=3),  # (6,4,4)
        ir.ReLU(),
        ir.AvgPool2d(kernel=2, stride=2),  # (6,2,2)
        ir.Flatten(),
        _dense(rng, 24, 3),
    ]
    return ev.Network((2, 8, 8), layers, name="conv_net")


def mlp_smooth(rng) -> ev.Network:
    return ev.Network((4,), [_dense(rng, 4, 8, 2.0), ir.Sigmoid(), _dense(rng, 8, 8, 3.0), ir.Tanh(),
                             _dense(rng, 8, 3)], name="mlp_smooth")


def deep_narrow(rng) -> ev.Network:
    layers: list[ir.Layer] = [_dense(rng, 3, 6, 1.5), ir.ReLU()]
    for _ in range(5):
        layers += [_dense(rng, 6, 6, 1.5), ir.ReLU()]
    layers.append(_dense(rng, 6, 2))
    return ev.Network((3,), layers, name="deep_narrow")


ARCHITECTURES = {f.__name__: f for f in (mlp_relu, mlp_leaky_clamp, conv_net, mlp_smooth, deep_narrow)}
EPS = {"mlp_relu": (0.3, 0.6), "mlp_leaky_clamp": (0.3, 0.6), "conv_net": (0.1, 1.0), "mlp_smooth": (0.2, 0.4),
       "deep_narrow": (0.2, 0.4)}


def make_region(network: ev.Network, kind: str, rng) -> ev.Region:
    shape = network.input_shape
    center = torch.as_tensor(rng.uniform(0, 1, size=(BATCH, *shape)))
    eps_linf, eps_l1 = EPS[network.name]
    if kind == "box":
        width = torch.as_tensor(rng.uniform(0, 2 * eps_linf, size=(BATCH, *shape)))
        return ev.box(center - width / 2, center + width / 2, shape=shape)
    if kind == "linf":
        return ev.linf_ball(center, eps_linf, domain=(0.0, 1.0), shape=shape)
    return ev.l1_ball(center, eps_l1 * torch.tensor([1.0, 0.5, 2.0]), domain=(0.0, 1.0), shape=shape)


def assert_sound(network: ev.Network, region: ev.Region, lowers, uppers, label: str, count: int = SAMPLES) -> None:
    """``lower <= value <= upper`` at every layer for sampled points, the centre and corners."""
    gen = torch.Generator().manual_seed(0)
    points = region.sample(count, gen)
    middle = region.center if region.center is not None else (region.lower + region.upper) / 2
    points = torch.cat([points, middle.unsqueeze(0), region.lower.unsqueeze(0), region.upper.unsqueeze(0)])
    if region.norm == "l1":  # the box corners are not in an L1 ball
        points = points[:-2]
    value = points.reshape(-1, *region.shape)
    for index in range(len(network.layers) + 1):
        if index:
            value = network.layers[index - 1].forward(value)
        v = value.reshape(points.shape[0], region.batch_size, -1)
        low = lowers[index].reshape(1, region.batch_size, -1)
        up = uppers[index].reshape(1, region.batch_size, -1)
        bad = (v < low - SAMPLE_TOL) | (v > up + SAMPLE_TOL)
        if bad.any():
            p, b, k = (int(i) for i in bad.nonzero()[0])
            kind = network.layers[index].kind if index < len(network.layers) else "output"
            pytest.fail(f"{label}: value entering layer {index} ({kind}), neuron {k}, region {b}: "
                        f"{float(v[p, b, k])!r} outside [{float(low[0, b, k])!r}, {float(up[0, b, k])!r}]")


# ------------------------------------------------------------------ soundness
@pytest.mark.parametrize("kind", ["box", "linf", "l1"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_method_is_sound(arch: str, kind: str) -> None:
    rng = np.random.default_rng(7)
    network = ARCHITECTURES[arch](rng)
    region = make_region(network, kind, rng)
    results = {}
    for method in METHODS:
        options = {"max_neurons": LP_NEURONS} if method == "lp" else {}
        result = ev.bounds(network, region, method=method, **options)
        assert len(result.lower) == len(network.layers) + 1
        for index, shape in enumerate(network.shapes):
            assert result.lower[index].shape == (BATCH, *shape)
            assert result.lower[index].dtype == torch.float64
            assert bool((result.lower[index] <= result.upper[index]).all()), f"{method}: empty bounds at {index}"
        assert_sound(network, region, result.lower, result.upper, f"{arch}/{kind}/{method}")
        results[method] = result
    pure = ev.bounds(network, region, method="forward", backward_rows=0)  # no CROWN help at all
    assert_sound(network, region, pure.lower, pure.upper, f"{arch}/{kind}/forward-only")
    # CROWN is intersected with interval propagation, LP starts from CROWN and only tightens
    for index in range(len(network.layers) + 1):
        crown, interval, lp = results["crown"], results["interval"], results["lp"]
        for tighter in (crown, results["forward"], pure, results["alpha"]):
            assert bool((tighter.lower[index] >= interval.lower[index] - 1e-12).all())
            assert bool((tighter.upper[index] <= interval.upper[index] + 1e-12).all())
        assert bool((lp.lower[index] >= crown.lower[index]).all()), f"LP looser than CROWN at {index}"
        assert bool((lp.upper[index] <= crown.upper[index]).all()), f"LP looser than CROWN at {index}"


def test_forward_bounds_are_tight_on_a_low_dimensional_input() -> None:
    """A 2-d input through a wide 3-layer LeakyReLU/Clamp generator-like net: forward bounds are
    strictly tighter than interval bounds at the output, and within CROWN's neighbourhood."""
    rng = np.random.default_rng(5)
    layers = [_dense(rng, 2, 40), ir.LeakyReLU(0.2), _dense(rng, 40, 40), ir.LeakyReLU(0.2), _dense(rng, 40, 30),
              ir.Clamp(0.0, 1.0), _dense(rng, 30, 3)]
    network = ev.Network((2,), layers, name="latent_net")
    region = ev.linf_ball(torch.as_tensor(rng.normal(size=(4, 2))), 0.1, shape=(2,))
    interval = ev.bounds(network, region, method="interval")
    forward = ev.bounds(network, region, method="forward")
    crown = ev.bounds(network, region, method="crown")
    assert_sound(network, region, forward.lower, forward.upper, "latent_net/forward")
    width = {name: float((r.upper[-1] - r.lower[-1]).mean()) for name, r in
             (("interval", interval), ("forward", forward), ("crown", crown))}
    assert width["forward"] < 0.5 * width["interval"]
    assert width["forward"] <= 1.5 * width["crown"]


def test_crown_and_lp_tighten_a_relu_mlp() -> None:
    rng = np.random.default_rng(3)
    network = mlp_relu(rng)
    region = make_region(network, "linf", rng)
    interval = ev.bounds(network, region, method="interval")
    crown = ev.bounds(network, region, method="crown")
    lp = ev.bounds(network, region, method="lp")
    for a, b in zip(crown.stability, interval.stability, strict=True):
        assert bool((a.unstable <= b.unstable).all())
    assert sum(crown.unstable_per_layer()) < sum(interval.unstable_per_layer())
    width = {m: float((r.upper[-1] - r.lower[-1]).sum()) for m, r in (("i", interval), ("c", crown), ("l", lp))}
    assert width["l"] < width["c"] < width["i"]


# ------------------------------------------------------------------ exactness
def _affine_map(network: ev.Network) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, b)`` of an affine network, read off forward passes of the basis vectors."""
    n = network.input_size
    bias = network.forward(torch.zeros(1, n)).reshape(-1)
    basis = network.forward(torch.eye(n, dtype=torch.float64)).reshape(n, -1)
    return (basis - bias).T, bias


def test_crown_is_exact_on_a_single_dense_layer() -> None:
    rng = np.random.default_rng(11)
    network = ev.Network((4,), [_dense(rng, 4, 5)])
    region = make_region(mlp_relu(rng), "box", rng)
    low, up = crown_bounds(network, region)
    vertices = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    for b in range(BATCH):
        corners = region.lower[b] + vertices * (region.upper[b] - region.lower[b])
        values = network.forward(corners)
        torch.testing.assert_close(low[-1][b], values.min(0).values, atol=1e-9, rtol=0)
        torch.testing.assert_close(up[-1][b], values.max(0).values, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["linf", "l1"])
def test_crown_is_exact_on_an_affine_conv_chain(kind: str) -> None:
    """Strided/padded/dilated/grouped conv, avg pool, batch norm, flatten, dense: back-substitution must
    reproduce the exact range (checks conv_transpose2d and its output_padding)."""
    rng = np.random.default_rng(5)
    layers = [
        ir.Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), stride=2, padding=1),  # (2,3,3) from 6x6
        ir.ElementwiseAffine(rng.normal(size=(2, 1, 1)), rng.normal(size=(2, 1, 1))),
        ir.Conv2d(rng.normal(size=(4, 1, 2, 2)), rng.normal(size=4), padding=1, dilation=2, groups=2),  # (4,3,3)
        ir.AvgPool2d(kernel=2, stride=1),  # (4,2,2)
        ir.Flatten(),
        _dense(rng, 16, 3),
    ]
    network = ev.Network((1, 6, 6), layers)
    center = torch.as_tensor(rng.uniform(0, 1, size=(2, 1, 6, 6)))
    region = (ev.linf_ball(center, 0.1, domain=(0, 1), shape=(1, 6, 6)) if kind == "linf"
              else ev.l1_ball(center, 0.5, domain=(0, 1), shape=(1, 6, 6)))
    low, up = crown_bounds(network, region)
    matrix, bias = _affine_map(network)
    for b in range(2):
        for j in range(3):
            lo_ref = _lp_min(matrix[j].numpy(), region, b) + float(bias[j])
            hi_ref = -_lp_min(-matrix[j].numpy(), region, b) + float(bias[j])
            assert abs(float(low[-1][b, j]) - lo_ref) < 1e-7
            assert abs(float(up[-1][b, j]) - hi_ref) < 1e-7


def _lp_min(a: np.ndarray, region: ev.Region, b: int) -> float:
    """``min a.x`` over region ``b`` by scipy's LP solver (epigraph form for L1)."""
    low = region.lower[b].reshape(-1).numpy()
    up = region.upper[b].reshape(-1).numpy()
    n = a.size
    if region.norm != "l1":
        res = linprog(a, bounds=np.column_stack([low, up]), method="highs")
        return float(res.fun)
    center = region.center[b].reshape(-1).numpy()
    eye = np.eye(n)
    a_ub = np.block([[eye, -eye], [-eye, -eye], [np.zeros((1, n)), np.ones((1, n))]])
    b_ub = np.concatenate([center, -center, [float(region.eps[b])]])
    bounds = np.vstack([np.column_stack([low, up]), np.column_stack([np.zeros(n), np.full(n, np.inf)])])
    res = linprog(np.concatenate([a, np.zeros(n)]), A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0
    return float(res.fun)


def test_l1_knapsack_matches_lp_and_beats_dual_norm() -> None:
    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(1, 7))
        center = torch.as_tensor(rng.uniform(0, 1, size=(1, n)))
        eps = float(rng.uniform(0.01, 2.0))
        region = ev.l1_ball(center, eps, domain=(0.0, 1.0) if trial % 3 else None, shape=(n,))
        coef = rng.normal(size=(1, 2, n))
        coef[0, 1, : n // 2] = 0.0  # zero coefficients must cost nothing
        value = concretize(region, torch.as_tensor(coef), torch.zeros(1, 2, dtype=torch.float64))
        for row in range(2):
            ref = _lp_min(coef[0, row], region, 0)
            assert abs(float(value[0, row]) - ref) < 1e-9 * (1 + abs(ref)), f"trial {trial} row {row}"
            dual = float(coef[0, row] @ center[0].numpy()) - eps * np.abs(coef[0, row]).max()
            assert float(value[0, row]) >= dual - 1e-12


# ------------------------------------------------------------------ batching, chunking
def test_batch_equals_per_region_and_chunking_is_invisible() -> None:
    rng = np.random.default_rng(9)
    for network in (mlp_leaky_clamp(rng), conv_net(rng)):
        for kind in ("linf", "l1"):
            region = make_region(network, kind, rng)
            low, up = crown_bounds(network, region)
            tiny_low, tiny_up = crown_bounds(network, region, max_elements=4000)  # neuron and region chunks
            for b in range(BATCH):
                one_low, one_up = crown_bounds(network, region[b])
                for i in range(len(low)):
                    torch.testing.assert_close(low[i][b: b + 1], one_low[i], atol=1e-12, rtol=0)
                    torch.testing.assert_close(up[i][b: b + 1], one_up[i], atol=1e-12, rtol=0)
            for i in range(len(low)):
                torch.testing.assert_close(low[i], tiny_low[i], atol=1e-12, rtol=0)
                torch.testing.assert_close(up[i], tiny_up[i], atol=1e-12, rtol=0)


def test_lp_batch_equals_per_region() -> None:
    rng = np.random.default_rng(4)
    network = mlp_relu(rng)
    region = make_region(network, "l1", rng)
    low, up = lp_bounds(network, region)
    one_low, one_up = lp_bounds(network, region[1])
    for i in range(len(low)):
        torch.testing.assert_close(low[i][1:2], one_low[i], atol=1e-12, rtol=0)
        torch.testing.assert_close(up[i][1:2], one_up[i], atol=1e-12, rtol=0)


# ------------------------------------------------------------------ building blocks
@pytest.mark.parametrize("layer", [ir.ReLU(), ir.LeakyReLU(0.2), ir.Clamp(-0.5, 0.7), ir.Clamp(0.3, 0.3),
                                   ir.Sigmoid(), ir.Tanh()], ids=lambda layer: layer.kind)
def test_relaxation_lines_enclose_the_activation(layer: ir.Layer) -> None:
    gen = torch.Generator().manual_seed(1)
    ends = torch.randn(2, 4000, generator=gen, dtype=torch.float64) * 3
    ends[:, :50] = torch.tensor([-0.5, 0.7]).repeat(25).reshape(2, 25).T.reshape(-1).reshape(1, 50)  # on kinks
    ends[1, 50:100] = ends[0, 50:100]  # degenerate intervals
    low, up = ends.min(0).values, ends.max(0).values
    al, bl, au, bu = relax_elementwise(layer, low, up)
    t = torch.rand(64, 4000, generator=gen, dtype=torch.float64)
    t[0], t[1] = 0.0, 1.0
    x = low + t * (up - low)
    y = layer.forward(x)
    assert bool((al * x + bl <= y + 1e-12).all()), f"{layer.kind}: lower line above the function"
    assert bool((au * x + bu >= y - 1e-12).all()), f"{layer.kind}: upper line below the function"


@pytest.mark.parametrize("layer", [
    ir.Conv2d(np.arange(36.0).reshape(4, 1, 3, 3) / 10, np.arange(4.0), stride=2, padding=1, dilation=1, groups=2),
    ir.Conv2d(np.ones((3, 2, 2, 2)), np.zeros(3), stride=1, padding=(0, 1), dilation=2),
    ir.AvgPool2d(kernel=3, stride=2, padding=1),
    ir.ElementwiseAffine(np.array([[[2.0]], [[-1.0]]]), np.array(0.5)),
])
def test_affine_matrix_matches_forward(layer: ir.Layer) -> None:
    shape = (2, 7, 6)
    matrix, bias = affine_matrix(layer, shape)
    x = torch.randn(5, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = layer.forward(x).reshape(5, -1).numpy()
    got = (matrix @ x.reshape(5, -1).numpy().T).T + bias
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("method", LP_METHODS)
def test_lp_certificate_is_a_valid_lower_bound(method: str) -> None:
    rng = np.random.default_rng(6)
    import scipy.sparse as sp

    for _ in range(10):
        x0 = rng.uniform(-1, 1, 6)
        a_ub = rng.normal(size=(5, 6))
        b_ub = a_ub @ x0 + rng.uniform(0, 1, 5)
        a_eq = rng.normal(size=(2, 6))
        b_eq = a_eq @ x0
        lb, ub = -np.full(6, 2.0), np.full(6, 2.0)
        c = rng.normal(size=6)
        matrices = (sp.csr_matrix(a_ub), b_ub, sp.csr_matrix(a_eq), b_eq, lb, ub)
        bound = safe_minimum(c, matrices, 5.0, method)
        ref = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([lb, ub]),
                      method="highs").fun
        assert bound is not None and ref - 1e-6 <= bound <= ref


def test_bad_options_are_rejected() -> None:
    network = mlp_relu(np.random.default_rng(0))
    region = ev.linf_ball(torch.zeros(4), 0.1)
    with pytest.raises(InvalidInputError, match="max_elements"):
        crown_bounds(network, region, max_elements=0)
    with pytest.raises(InvalidInputError, match="time_limit"):
        lp_bounds(network, region, time_limit=-1)
    with pytest.raises(InvalidInputError, match="max_neurons"):
        lp_bounds(network, region, max_neurons=-2)
    with pytest.raises(InvalidInputError, match="layers"):
        lp_bounds(network, region, layers=[0])
    with pytest.raises(InvalidInputError, match="lp_method"):
        lp_bounds(network, region, lp_method="simplex")


@pytest.mark.slow
def test_crown_runs_on_a_mnist_sized_mlp_batch() -> None:
    rng = np.random.default_rng(0)
    network = ev.Network((784,), [_dense(rng, 784, 256), ir.ReLU(), _dense(rng, 256, 256), ir.ReLU(),
                                  _dense(rng, 256, 10)])
    region = ev.linf_ball(torch.rand(1024, 784), 0.03, domain=(0, 1), shape=(784,))
    result = ev.bounds(network, region, method="crown")
    assert_sound(network, region[:8], [t[:8] for t in result.lower], [t[:8] for t in result.upper], "mnist", 200)


# ------------------------------------------------------------------ bad input at the entry points
@pytest.mark.parametrize(("make", "message"), [
    (lambda: ev.l1_ball(np.array([np.inf, 0.0, 0.0, 0.0]), 0.1), "center contains infinite"),
    (lambda: ev.linf_ball(np.array([0.0, -np.inf, 0.0, 0.0]), 0.1), "center contains infinite"),
    (lambda: ev.linf_ball(np.full(4, 0.5), 1e308), r"eps=1e\+308 is too large"),
    (lambda: ev.l1_ball(np.full(4, 0.5), 1e308), r"eps=1e\+308 is too large"),
    (lambda: ev.box(np.full(4, -1e308), np.full(4, 1e308)), "box is too wide"),
    (lambda: ev.linf_ball(np.full(4, 0.5), "0.1"), "eps must be a number"),
    (lambda: ev.linf_ball(np.full(4, 0.5), ["a"]), "eps must be a number"),
    (lambda: ev.linf_ball(np.full(4, 0.5), True), "eps must be a number"),
    (lambda: ev.linf_ball(["a", "b"], 0.1), "center must be an array of numbers"),
])
def test_regions_refuse_infinite_centres_overflowing_boxes_and_non_numbers(make, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()


def test_a_huge_eps_clipped_to_a_finite_domain_gives_finite_bounds() -> None:
    network = mlp_relu(np.random.default_rng(0))
    result = ev.bounds(network, ev.linf_ball(np.full(4, 0.5), 1e308, domain=(0, 1)))
    assert all(torch.isfinite(t).all() for t in (*result.lower, *result.upper))


@pytest.mark.parametrize("method", ["interval", "crown", "alpha", "forward"])
def test_bounds_that_overflow_to_nan_are_an_input_error(method: str) -> None:
    """A finite but huge ball on a large-weight net overflows float64 (inf - inf = NaN):
    refused naming eps, not returned as NaN bounds; a smaller eps stays finite."""
    rng = np.random.default_rng(0)
    layers = [ir.Dense(layer.weight * 1e30, layer.bias * 1e30) if isinstance(layer, ir.Dense) else layer
              for layer in mlp_relu(rng).layers]
    network = ev.Network((4,), layers)
    with pytest.raises(InvalidInputError, match=r"overflowed float64 \(NaN\).*smaller eps"):
        ev.bounds(network, ev.linf_ball(np.zeros(4), 1e300), method=method)
    result = ev.bounds(network, ev.linf_ball(np.zeros(4), 1e200), method=method)
    assert not any(torch.isnan(t).any() for t in (*result.lower, *result.upper))


@pytest.mark.parametrize(("method", "options", "message"), [
    ("milp", {"threads": 0}, "threads must be an int >= 1, got 0"),
    ("milp", {"threads": 2.5}, "threads must be an int >= 1, got 2.5"),
    ("milp", {"threads": True}, "threads must be an int >= 1, got True"),
    ("milp", {"stats": "x"}, "stats must be a dict"),
    ("interval", {"tim_limit": 1}, "unknown option.*tim_limit.*'interval'; it takes no options"),
    ("crown", {"foo": 1}, "unknown option.*foo.*'crown'; its options are: max_elements"),
    ("lp", {"tim_limit": 1}, "unknown option.*tim_limit.*'lp'; its options are: time_limit"),
])
def test_bounds_options_are_validated_at_the_entry(method: str, options: dict, message: str) -> None:
    network = mlp_relu(np.random.default_rng(0))
    region = ev.linf_ball(np.full(4, 0.5), 0.1)
    with pytest.raises(InvalidInputError, match=message):
        ev.bounds(network, region, method=method, **options)


def test_bounds_device_is_validated_up_front(monkeypatch) -> None:
    network = mlp_relu(np.random.default_rng(0))
    region = ev.linf_ball(np.full(4, 0.5), 0.1)
    with pytest.raises(InvalidInputError, match="device must be a torch device.*'banana'"):
        ev.bounds(network, region, device="banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match=r"device='cuda' asks for CUDA.*is_available\(\) is False"):
        ev.bounds(network, region, device="cuda")
    assert ev.bounds(network, region, device="cpu").lower[-1].device.type == "cpu"
