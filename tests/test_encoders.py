"""Tests of the MILP and SMT encoders against independent oracles.

1. Fixed-input test (every encoder x backend): the input is boxed to ``x0 +- 1e-4`` and an
   output combination minimised; the solver's value of every layer must match the float64
   forward pass at the solver's own input point within :data:`FIXED_INPUT_ATOL`.
2. Exhaustive optimum: maximise each output of tiny networks over a small region with the
   MILP and compare with enumeration of all activation / max-pool / clamp pieces, one
   scipy LP per piece (:func:`piecewise_max`, which shares no code with the encoders).
3. SMT (exact rationals) and MILP agree on feasibility of random tiny queries, and every
   witness of either is re-checked with the forward pass.
4. Disjunctive specs: the optimum over a union is the max over its disjuncts.
5. Refusals and input validation name the layer or parameter.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from encoders.backends import make_backend
from encoders.backends.base import Status
from encoders.milp import CLAMP, encode_network, encode_query, encode_region
from encoders.milp.linear import affine_matrix
from encoders.smt import encode_smt, solve_smt
from exactverify import ir
from exactverify.bounds import bounds as compute_bounds
from exactverify.errors import InvalidInputError, SolverError, UnsupportedLayerError
from exactverify.regions import box, l1_ball, linf_ball
from exactverify.specs import Conjunction, OutputSpec, other_class_wins

#: |solver value - forward pass| allowed in the fixed-input test: the solvers' feasibility
#: tolerance (1e-6 in SCIP and HiGHS). Observed worst case on these nets: 3e-15 (optimal
#: points are vertices where binaries are exactly 0/1); a wrong formulation is off by >1e-3.
FIXED_INPUT_ATOL = 1e-6
#: |MILP optimum - enumeration optimum| allowed (solver tolerances as above, HiGHS 1e-7).
OPTIMUM_ATOL = 1e-5
#: Slack when re-checking a witness's membership in the spec and region.
WITNESS_TOL = 1e-5
#: Half-width of the fixed-input box.
FIXED_RADIUS = 1e-4

MILP_BACKENDS = ["scip", "ortools", "z3"]


def backend(name: str = "scip"):
    """A fresh backend, or skip the test with the reason when the solver is unavailable."""
    try:
        return make_backend(name)
    except SolverError as exc:  # pragma: no cover - depends on the installation
        pytest.skip(f"backend {name!r} unavailable: {exc}")


def true_spec(n: int) -> OutputSpec:
    """The whole output space (one disjunct without rows)."""
    return OutputSpec((Conjunction(np.zeros((0, n)), np.zeros(0)),), n, "true")


def forward_flat(net: ir.Network, x: np.ndarray, upto: int | None = None) -> np.ndarray:
    return net.forward(torch.as_tensor(x, dtype=torch.float64).reshape(1, -1), upto=upto).numpy().reshape(-1)


# ------------------------------------------------------------------ architectures
def _dense(rng, n_out, n_in, scale=1.0):
    return ir.Dense(rng.normal(0, scale / np.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.3, n_out))


def mlp(seed=0) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers = (_dense(rng, 8, 4, 2), ir.ReLU(), _dense(rng, 6, 8, 2), ir.ReLU(), _dense(rng, 3, 6, 2))
    return ir.Network((4,), layers, (np.zeros(4), np.ones(4)), "mlp")


def leaky_clamp(seed=1) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers = (ir.ElementwiseAffine(np.array([2.0, -1.0, 0.5]), np.array([-1.0, 0.5, 0.0])),
              _dense(rng, 6, 3, 2), ir.LeakyReLU(0.1), _dense(rng, 5, 6, 2), ir.Clamp(-0.5, 0.5),
              _dense(rng, 3, 5, 2))
    return ir.Network((3,), layers, (np.zeros(3), np.ones(3)), "leaky_clamp")


def conv_pool(seed=2) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers = (ir.Conv2d(rng.normal(0, 0.5, (2, 1, 3, 3)), rng.normal(0, 0.2, 2), padding=1), ir.ReLU(),
              ir.MaxPool2d(2, 2, 1), ir.AvgPool2d(2), ir.Flatten(), _dense(rng, 3, 8, 2))
    return ir.Network((1, 6, 6), layers, (np.zeros((1, 6, 6)), np.ones((1, 6, 6))), "conv_pool")


def conv_grouped(seed=3) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers = (ir.Conv2d(rng.normal(0, 0.5, (4, 1, 3, 3)), rng.normal(0, 0.2, 4), stride=2, padding=1, groups=2),
              ir.ReLU(), ir.MaxPool2d(3, 1, 1),
              ir.Conv2d(rng.normal(0, 0.5, (2, 4, 2, 2)), rng.normal(0, 0.2, 2), dilation=2), ir.ReLU(),
              ir.Reshape((2,)), _dense(rng, 2, 2, 2))
    return ir.Network((2, 5, 5), layers, None, "conv_grouped")


def deeper(seed=4) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers: list[ir.Layer] = []
    width = 5
    for out in (8, 8, 8, 8):
        layers += [_dense(rng, out, width, 2), ir.ReLU()]
        width = out
    layers.append(_dense(rng, 3, width, 2))
    return ir.Network((5,), tuple(layers), None, "deeper")


ARCHITECTURES = {"mlp": mlp, "leaky_clamp": leaky_clamp, "conv_pool": conv_pool,
                 "conv_grouped": conv_grouped, "deeper": deeper}

# encoder variant -> (maxpool, registry)
MILP_VARIANTS = {
    "direct": ("direct", None),
    "relu_chain": ("relu_chain", None),
    "clamp_chain": ("direct", {ir.Clamp: CLAMP["chain"]}),
}


def _fixed_region(net: ir.Network, seed: int):
    """A random point, the fixed box around it, and interval bounds over a WIDE box (+-0.5).

    Bounds of a superset are sound for the fixed box and leave many ReLUs unstable, so
    the binaries and big-Ms are exercised although the input is pinned.
    """
    rng = np.random.default_rng(100 + seed)
    x0 = rng.uniform(0, 1, net.input_shape)
    region = box(x0 - FIXED_RADIUS, x0 + FIXED_RADIUS)
    wide = compute_bounds(net, box(x0 - 0.5, x0 + 0.5), method="interval")
    return x0, region, wide


def _check_values(net, values_per_layer, x, tmp_path, be):
    """Every layer's solver values match the forward pass at the solver's input ``x``."""
    for i, values in enumerate(values_per_layer):
        expected = forward_flat(net, x, upto=i)
        err = np.abs(values - expected).max()
        if err > FIXED_INPUT_ATOL and be is not None:
            try:
                be.write(str(tmp_path / "failed_fixed_input.lp"))
            except NotImplementedError:
                pass
        assert err <= FIXED_INPUT_ATOL, (
            f"{net.name}: value entering layer {i} differs from forward pass by {err:.3g} "
            f"(model written to {tmp_path})")


def _fixed_cases():
    """(arch, variant, backend): every architecture with the default encoders on every backend
    (z3 is for tiny models: mlp only), plus each alternative encoding where its layer occurs."""
    cases = []
    for backend_name in MILP_BACKENDS:
        for arch in ARCHITECTURES:
            if backend_name == "z3" and arch != "mlp":
                continue
            cases.append((arch, "direct", backend_name))
            if backend_name == "z3":
                continue
            if arch in ("conv_pool", "conv_grouped"):
                cases.append((arch, "relu_chain", backend_name))
            if arch == "leaky_clamp":
                cases.append((arch, "clamp_chain", backend_name))
    return cases


@pytest.mark.parametrize(("arch", "variant", "backend_name"), _fixed_cases())
def test_fixed_input_milp(arch, variant, backend_name, tmp_path):
    net = ARCHITECTURES[arch]()
    maxpool, registry = MILP_VARIANTS[variant]
    for seed in range(2):
        x0, region, wide = _fixed_region(net, seed)
        be = backend(backend_name)
        enc = encode_query(be, net, region, true_spec(net.output_size), wide, maxpool=maxpool, registry=registry)
        c = np.random.default_rng(seed).normal(size=net.output_size)
        be.set_objective(enc.output, c)
        result = be.solve(time_limit=60)
        assert result.status == Status.OPTIMAL, result.raw_status
        x = result.values[enc.input]
        assert np.all(np.abs(x - x0.reshape(-1)) <= FIXED_RADIUS + WITNESS_TOL)
        _check_values(net, [result.values[v] for v in enc.values], x, tmp_path, be)
        # x0 is feasible, so the minimum is at most c . f(x0)
        assert result.objective <= c @ forward_flat(net, x0) + OPTIMUM_ATOL
        assert result.objective == pytest.approx(c @ forward_flat(net, x), abs=FIXED_INPUT_ATOL * np.abs(c).sum())
    if any(isinstance(layer, ir.ReLU) for layer in net.layers):
        assert enc.binaries > 0 and sum(enc.unstable) > 0, "wide bounds should leave unstable ReLUs"


@pytest.mark.parametrize("arch", ["mlp", "leaky_clamp", "conv_pool"])
def test_fixed_input_smt(arch):
    net = ARCHITECTURES[arch]()
    x0, region, wide = _fixed_region(net, 0)
    enc = encode_smt(net, region, true_spec(net.output_size), wide)
    result = solve_smt(enc, time_limit=30)
    assert result.status == Status.OPTIMAL, result.raw_status
    x, y = result.values[:net.input_size], result.values[net.input_size:]
    assert np.all(np.abs(x - x0.reshape(-1)) <= FIXED_RADIUS * (1 + 1e-9))
    # exact arithmetic: only the float conversion of the witness separates the two
    np.testing.assert_allclose(y, forward_flat(net, x), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------- exhaustive enumeration
def _layer_affine(layer: ir.Layer, in_shape) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of an affine layer from its torch forward pass on basis vectors (independent of the encoder)."""
    n = int(np.prod(in_shape))
    basis = torch.cat([torch.zeros(1, n), torch.eye(n)]).to(torch.float64).reshape(n + 1, *in_shape)
    out = layer.forward(basis).reshape(n + 1, -1).numpy()
    return (out[1:] - out[0]).T, out[0]


class _Lp:
    """LPs over the region in x (box; L1 via one extra variable per coordinate)."""

    def __init__(self, region):
        self.low = region.lower[0].reshape(-1).numpy()
        self.up = region.upper[0].reshape(-1).numpy()
        self.n = len(self.low)
        self.l1 = region.norm == "l1"
        if self.l1:
            self.c = region.center[0].reshape(-1).numpy()
            self.eps = float(region.eps[0])

    def solve(self, cost_x, G, h):
        """min cost_x . x s.t. G x <= h and x in the region; None when infeasible."""
        n = self.n
        G = np.asarray(G).reshape(-1, n)
        if not self.l1:
            res = linprog(cost_x, A_ub=G if len(G) else None, b_ub=h if len(G) else None,
                          bounds=list(zip(self.low, self.up, strict=True)), method="highs")
        else:
            eye = np.eye(n)
            A = [np.hstack([G, np.zeros((len(G), n))]), np.hstack([eye, -eye]), np.hstack([-eye, -eye]),
                 np.r_[np.zeros(n), np.ones(n)][None]]
            b = [h, self.c, -self.c, [self.eps]]
            res = linprog(np.r_[cost_x, np.zeros(n)], A_ub=np.vstack(A), b_ub=np.concatenate(b),
                          bounds=list(zip(self.low, self.up, strict=True)) + [(0, None)] * n, method="highs")
        if res.status == 2:
            return None
        assert res.status == 0, res.message
        return float(res.fun)


def _unit_pieces(layer, in_shape, M, c):
    """Per output unit of a piecewise layer: list of (G rows, h, out row, out const) on x."""
    units = []
    if isinstance(layer, (ir.ReLU, ir.LeakyReLU)):
        a = layer.negative_slope if isinstance(layer, ir.LeakyReLU) else 0.0
        for k in range(len(c)):
            units.append([(-M[k][None], [c[k]], M[k], c[k]), (M[k][None], [-c[k]], a * M[k], a * c[k])])
    elif isinstance(layer, ir.Clamp):
        for k in range(len(c)):
            units.append([(M[k][None], [layer.low - c[k]], 0 * M[k], layer.low),
                          (np.stack([-M[k], M[k]]), [c[k] - layer.low, layer.high - c[k]], M[k], c[k]),
                          (-M[k][None], [c[k] - layer.high], 0 * M[k], layer.high)])
    elif isinstance(layer, ir.MaxPool2d):
        for window in layer.window_indices(in_shape):
            cand = window[window >= 0]
            units.append([(M[cand] - M[i], c[i] - c[cand], M[i], c[i]) for i in cand])
    else:
        raise TypeError(layer.kind)
    return units


def piecewise_max(net: ir.Network, region) -> np.ndarray:
    """Max of every output over ``region`` by depth-first enumeration of all pieces.

    Each unit's piece adds its defining inequalities; a partial choice is pruned only
    when its LP is infeasible (then every completion is). On a full choice the network
    is affine and one LP per output gives that piece's maximum.
    """
    lp = _Lp(region)
    n = lp.n
    best = np.full(net.output_size, -np.inf)

    def run(i, M, c, G, h):
        if i == len(net.layers):
            for k in range(len(c)):
                value = lp.solve(-M[k], G, h)
                if value is not None:
                    best[k] = max(best[k], -value + c[k])
            return
        layer, shape = net.layers[i], net.shapes[i]
        if layer.affine:
            W, b = _layer_affine(layer, shape)
            return run(i + 1, W @ M, W @ c + b, G, h)
        units = _unit_pieces(layer, shape, M, c)

        def choose(u, G, h, rows, consts):
            if u == len(units):
                return run(i + 1, np.array(rows).reshape(-1, n), np.array(consts), G, h)
            for Gp, hp, row, const in units[u]:
                G2, h2 = np.vstack([G, Gp]), np.r_[h, hp]
                if lp.solve(np.zeros(n), G2, h2) is not None:
                    choose(u + 1, G2, h2, rows + [row], consts + [const])

        choose(0, G, h, [], [])

    run(0, np.eye(n), np.zeros(n), np.zeros((0, n)), np.zeros(0))
    return best


def tiny_mlp():
    rng = np.random.default_rng(7)
    return ir.Network((2,), (_dense(rng, 4, 2, 2), ir.ReLU(), _dense(rng, 3, 4, 2), ir.ReLU(),
                             _dense(rng, 2, 3, 2)), None, "tiny_mlp")


def tiny_conv_pool():
    rng = np.random.default_rng(8)
    # the 3x3 pool window with padding 1 holds the four ReLU outputs and five padding cells
    layers = (ir.Conv2d(rng.normal(0, 1, (1, 1, 2, 2)), [0.1]), ir.ReLU(), ir.MaxPool2d(3, 2, 1), ir.Flatten(),
              _dense(rng, 2, 1, 2))
    return ir.Network((1, 3, 3), layers, None, "tiny_conv_pool")


def tiny_leaky_clamp():
    rng = np.random.default_rng(9)
    layers = (_dense(rng, 3, 2, 2), ir.LeakyReLU(0.2), _dense(rng, 3, 3, 2), ir.Clamp(-0.3, 0.4),
              _dense(rng, 2, 3, 2))
    return ir.Network((2,), layers, None, "tiny_leaky_clamp")


def milp_max(net, region, k, **options) -> float:
    be = backend("scip")
    b = compute_bounds(net, region, method="interval")
    enc = encode_query(be, net, region, true_spec(net.output_size), b, **options)
    be.set_objective(enc.output[k:k + 1], [1.0], minimize=False)
    result = be.solve(time_limit=60)
    assert result.status == Status.OPTIMAL, result.raw_status
    return result.objective


EXHAUSTIVE = {
    "mlp_box": (tiny_mlp, lambda: box(-np.ones(2), np.ones(2)), [{}]),
    "mlp_l1": (tiny_mlp, lambda: l1_ball(np.array([0.2, -0.1]), 0.8),
               [{"l1": "epigraph"}, {"l1": "relu"}]),
    "conv_pool": (tiny_conv_pool, lambda: linf_ball(np.full((1, 3, 3), 0.3), 0.3),
                  [{"maxpool": "direct"}, {"maxpool": "relu_chain"}]),
    "leaky_clamp": (tiny_leaky_clamp, lambda: box(-np.ones(2), np.ones(2)),
                    [{}, {"registry": {ir.Clamp: CLAMP["chain"]}}]),
}


@pytest.mark.parametrize("case", list(EXHAUSTIVE))
def test_milp_optimum_matches_enumeration(case):
    make_net, make_region, option_sets = EXHAUSTIVE[case]
    net, region = make_net(), make_region()
    expected = piecewise_max(net, region)
    assert np.all(np.isfinite(expected))
    for options in option_sets:
        for k in range(net.output_size):
            got = milp_max(net, region, k, **options)
            assert got == pytest.approx(expected[k], abs=OPTIMUM_ATOL), f"output {k} with {options}"


def test_l1_distortion_encodings_agree_with_norm():
    """Minimised L1 distortion equals the true norm of the witness for both L1 encodings."""
    net = tiny_mlp()
    region = l1_ball(np.array([0.2, -0.1]), 0.8)
    target = OutputSpec((Conjunction(np.array([[1.0, -1.0]]), np.array([-0.5])),), 2)
    optima = []
    for l1 in ("epigraph", "relu"):
        be = backend("scip")
        enc = encode_query(be, net, region, target, compute_bounds(net, region, method="interval"),
                           distortion=True, l1=l1)
        be.set_objective([enc.distortion], [1.0])
        result = be.solve(time_limit=60)
        assert result.status == Status.OPTIMAL, result.raw_status
        x = result.values[enc.input]
        assert result.objective == pytest.approx(np.abs(x - [0.2, -0.1]).sum(), abs=WITNESS_TOL)
        assert bool(target.contains(forward_flat(net, x)[None], tol=WITNESS_TOL)[0])
        optima.append(result.objective)
    assert optima[0] == pytest.approx(optima[1], abs=OPTIMUM_ATOL)


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_min_distortion_matches_oracle(norm):
    """Minimal distortion to another class on a seeded tiny case equals the pattern-enumeration oracle."""
    oracles = pytest.importorskip("oracles", reason="tests/oracles.py not importable")
    from conftest import cached_case

    case = cached_case(0)
    net, x0 = case.network, case.x
    spec = other_class_wins(case.label, case.num_classes)
    low, high = net.input_domain
    region = (linf_ball if norm == "linf" else l1_ball)(x0, 10.0, domain=(low, high))
    expected = oracles.min_distortion(net, x0, norm, margin=1e-5, label=case.label).distance
    for l1 in (("epigraph", "relu") if norm == "l1" else ("epigraph",)):
        be = backend("scip")
        enc = encode_query(be, net, region, spec, compute_bounds(net, region, method="interval"),
                           distortion=True, l1=l1)
        be.set_objective([enc.distortion], [1.0])
        result = be.solve(time_limit=60)
        assert result.status == Status.OPTIMAL, result.raw_status
        assert result.objective == pytest.approx(expected, abs=OPTIMUM_ATOL), l1


# --------------------------------------------------------------------- SMT vs MILP
def _random_query(seed: int):
    rng = np.random.default_rng(1000 + seed)
    n_in, classes = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    layers, width = [], n_in
    for _ in range(int(rng.integers(1, 3))):
        out = int(rng.integers(2, 5))
        layers += [_dense(rng, out, width, 2), ir.ReLU()]
        width = out
    layers.append(_dense(rng, classes, width, 2))
    net = ir.Network((n_in,), tuple(layers), None, f"rand{seed}")
    center = rng.uniform(-1, 1, n_in)
    eps = float(rng.choice([0.05, 0.2, 0.5, 1.0]))
    region = (linf_ball if seed % 2 == 0 else l1_ball)(center, eps)
    label = int(forward_flat(net, center).argmax())
    if seed % 3 == 2:  # a polyhedral target: output 0 above a level that may or may not be reachable
        spec = OutputSpec((Conjunction(-np.eye(classes)[:1], [-float(rng.uniform(0, 2))]),), classes)
    else:
        spec = other_class_wins(label, classes, margin=1e-3)
    return net, region, spec


def _witness_ok(net, region, spec, x) -> bool:
    x_t = torch.as_tensor(x).reshape(1, *net.input_shape)
    return bool(region.contains(x_t, tol=WITNESS_TOL)[0]) and bool(
        spec.contains(forward_flat(net, x)[None], tol=WITNESS_TOL)[0])


def test_smt_agrees_with_milp_on_feasibility():
    verdicts = []
    for seed in range(12):
        net, region, spec = _random_query(seed)
        b = compute_bounds(net, region, method="interval")
        be = backend("scip")
        enc = encode_query(be, net, region, spec, b)
        milp = be.solve(time_limit=30)
        smt = solve_smt(encode_smt(net, region, spec, b), time_limit=30)
        assert milp.status in (Status.OPTIMAL, Status.INFEASIBLE), milp.raw_status
        assert smt.status in (Status.OPTIMAL, Status.INFEASIBLE), smt.raw_status
        assert milp.status == smt.status, f"query {seed}: MILP {milp.status}, SMT {smt.status}"
        if smt.status == Status.OPTIMAL:
            assert _witness_ok(net, region, spec, smt.values[:net.input_size]), f"query {seed}: SMT witness"
            assert _witness_ok(net, region, spec, milp.values[enc.input]), f"query {seed}: MILP witness"
        verdicts.append(smt.status)
    assert Status.OPTIMAL in verdicts and Status.INFEASIBLE in verdicts, "queries should cover both answers"


def test_smt_eps_override_and_distortion():
    net, region, spec = _random_query(0)
    enc = encode_smt(net, region, spec, eps_override=0.0)  # only the center is left
    result = solve_smt(enc)
    center = region.center[0].numpy()
    expected = bool(spec.contains(forward_flat(net, center)[None])[0])
    assert (result.status == Status.OPTIMAL) == expected
    with pytest.raises(InvalidInputError, match="eps_override"):
        encode_smt(net, region, spec, eps_override=float(region.eps[0]) * 2)
    enc = encode_smt(net, region, true_spec(net.output_size))
    assert solve_smt(enc).status == Status.OPTIMAL
    x = np.array([float(enc.model.eval(t, model_completion=True).as_fraction()) for t in enc.input])
    dist = enc.model.eval(enc.distortion, model_completion=True).as_fraction()
    assert float(dist) == pytest.approx(np.abs(x - center).max(), abs=1e-12)


# ------------------------------------------------------------------ disjunctions
def test_disjunctive_spec_optimum_is_max_over_disjuncts():
    net = tiny_mlp()
    region = box(-np.ones(2), np.ones(2))
    b = compute_bounds(net, region, method="interval")
    disjuncts = (Conjunction([[1.0, -1.0]], [-0.3]),  # y0 <= y1 - 0.3
                 Conjunction([[-1.0, 0.0], [0.0, 1.0]], [0.5, -0.2]),  # y0 >= -0.5, y1 <= -0.2
                 Conjunction([[0.0, 1.0]], [-1e3]))  # y1 <= -1000: impossible on the output box

    def max_y0(spec):
        be = backend("scip")
        enc = encode_query(be, net, region, spec, b)
        be.set_objective(enc.output[:1], [1.0], minimize=False)
        result = be.solve(time_limit=60)
        if result.status == Status.INFEASIBLE:
            return -np.inf, enc, None
        assert result.status == Status.OPTIMAL, result.raw_status
        return result.objective, enc, result

    singles = [max_y0(OutputSpec((d,), 2))[0] for d in disjuncts]
    assert singles[2] == -np.inf and np.isfinite(singles[0]) and np.isfinite(singles[1])
    union = OutputSpec(disjuncts, 2)
    value, enc, result = max_y0(union)
    assert value == pytest.approx(max(singles), abs=OPTIMUM_ATOL)
    assert enc.binaries >= 3
    x = result.values[enc.input]
    assert bool(union.contains(forward_flat(net, x)[None], tol=WITNESS_TOL)[0])
    # the SMT encoding agrees that the union is reachable and the impossible disjunct is not
    assert solve_smt(encode_smt(net, region, union, b)).status == Status.OPTIMAL
    assert solve_smt(encode_smt(net, region, OutputSpec(disjuncts[2:], 2), b)).status == Status.INFEASIBLE
    be = backend("scip")
    encode_query(be, net, region, OutputSpec((disjuncts[2], disjuncts[2]), 2), b)
    assert be.solve().status == Status.INFEASIBLE


@pytest.mark.parametrize("seed", range(6))
def test_spec_slack_is_the_largest_slack_at_a_fixed_output(seed):
    """``encode_spec_slack`` maximised with the outputs fixed equals ``OutputSpec.slack``
    (max over disjuncts of min over rows of ``b - A y``), inside and outside the spec."""
    from encoders.milp import encode_spec_slack

    rng = np.random.default_rng(seed)
    outputs = 3
    disjuncts = tuple(Conjunction(rng.normal(size=(rows, outputs)), rng.normal(size=rows))
                      for rows in rng.integers(1, 4, size=int(rng.integers(1, 4))))
    spec = OutputSpec(disjuncts, outputs)
    lower, upper = -2 * np.ones(outputs), 2 * np.ones(outputs)
    for y in rng.uniform(-2, 2, size=(5, outputs)):
        be = backend("scip")
        ys = be.add_vars(lower, upper)
        for k in range(outputs):
            be.add_constraint([ys[k]], [1.0], "==", float(y[k]))
        slack, binaries = encode_spec_slack(be, ys, spec, lower, upper)
        assert binaries == (0 if len(disjuncts) == 1 else len(disjuncts))
        be.set_objective([slack], [1.0], minimize=False)
        result = be.solve(time_limit=30)
        assert result.status == Status.OPTIMAL, result.raw_status
        expected = float(spec.slack(torch.as_tensor(y)[None])[0])
        assert result.objective == pytest.approx(expected, abs=OPTIMUM_ATOL)


def test_slack_objective_decides_like_the_feasibility_form():
    """Maximising the spec's slack with cutoff/stop_at answers "is the spec reachable" as
    the constraint form does, and a point it stops at lies in the spec."""
    from exactverify.queries.stages import SLACK_CUTOFF

    net = tiny_mlp()
    region = box(-np.ones(2), np.ones(2))
    b = compute_bounds(net, region, method="interval")
    cases = [OutputSpec((Conjunction([[1.0, -1.0]], [t]),), 2) for t in (-3.0, -0.3, 0.0, 0.4, 3.0)]
    cases += [OutputSpec((Conjunction([[1.0, -1.0]], [-0.3]), Conjunction([[-1.0, 0.0], [0.0, 1.0]], [t, -0.2])), 2)
              for t in (-5.0, 0.5)]
    # the boundary case: the spec's largest slack is exactly 0 (reached at the minimiser of y0 - y1);
    # SLACK_CUTOFF keeps such a point from being cut off by the objective limit's own tolerance
    be = backend("scip")
    enc = encode_query(be, net, region, OutputSpec((Conjunction([[1.0, -1.0]], [1e3]),), 2), b)
    be.set_objective(enc.output, [1.0, -1.0], minimize=True)
    lowest = be.solve(time_limit=30).objective
    cases.append(OutputSpec((Conjunction([[1.0, -1.0]], [lowest]),), 2))
    for spec in cases:
        be = backend("scip")
        encode_query(be, net, region, spec, b)
        reachable = be.solve(time_limit=30).status != Status.INFEASIBLE
        be = backend("scip")
        enc = encode_query(be, net, region, spec, b, slack=True)
        be.set_objective([enc.slack], [1.0], minimize=False)
        result = be.solve(time_limit=30, cutoff=-SLACK_CUTOFF, stop_at=0.0)
        assert (result.status != Status.INFEASIBLE) == reachable, spec
        if reachable:
            assert result.status.has_solution and result.objective >= -1e-6
            x = result.values[enc.input]
            assert bool(spec.contains(forward_flat(net, x)[None], tol=WITNESS_TOL)[0])


# ------------------------------------------------------------ refusals, validation
@pytest.mark.parametrize("act", [ir.Sigmoid, ir.Tanh])
def test_nonlinear_layers_are_refused(act):
    rng = np.random.default_rng(0)
    net = ir.Network((2,), (_dense(rng, 3, 2), act(), _dense(rng, 2, 3)), None, "smooth")
    region = box(-np.ones(2), np.ones(2))
    b = compute_bounds(net, region, method="interval")
    pattern = f"layer 1.*{act.__name__}.*not piecewise linear"
    with pytest.raises(UnsupportedLayerError, match=pattern):
        encode_query(backend("scip"), net, region, true_spec(2), b)
    with pytest.raises(UnsupportedLayerError, match=pattern):
        encode_smt(net, region, true_spec(2), b)


def test_input_validation_names_the_parameter():
    net = tiny_mlp()
    region = box(-np.ones(2), np.ones(2))
    b = compute_bounds(net, region, method="interval")
    with pytest.raises(InvalidInputError, match="maxpool"):
        encode_query(backend("scip"), net, region, true_spec(2), b, maxpool="bogus")
    with pytest.raises(InvalidInputError, match="l1"):
        encode_region(backend("scip"), l1_ball(np.zeros(2), 0.5), l1="bogus")
    with pytest.raises(InvalidInputError, match="distortion"):
        encode_region(backend("scip"), region, distortion=True)
    two = box(-np.ones((2, 2)), np.ones((2, 2)), shape=(2,))
    with pytest.raises(InvalidInputError, match="batch of one"):
        encode_network(backend("scip"), net, compute_bounds(net, two, method="interval"), np.arange(2))
    with pytest.raises(InvalidInputError, match="batch of one"):
        encode_region(backend("scip"), two)


def test_affine_rows_match_forward():
    """The sparse rows of Conv2d/AvgPool2d/ElementwiseAffine equal the torch forward pass."""
    for net in (conv_pool(), conv_grouped(), leaky_clamp()):
        for layer, shape in zip(net.layers, net.shapes[:-1], strict=True):
            if layer.affine and not isinstance(layer, (ir.Flatten, ir.Reshape)):
                W, b = affine_matrix(layer, shape)
                W_ref, b_ref = _layer_affine(layer, shape)
                np.testing.assert_allclose(W, W_ref, atol=1e-12)
                np.testing.assert_allclose(b, b_ref, atol=1e-12)


def test_importing_milp_does_not_import_z3():
    code = "import sys, encoders.milp; assert 'z3' not in sys.modules, 'z3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
