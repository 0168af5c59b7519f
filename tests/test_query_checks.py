"""Named tolerances and time limits of the query entry points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import exactverify as ev
from exactverify import zoo
from exactverify.queries import DOMAIN_TOLERANCE, REGION_TOLERANCE
from exactverify.queries.checks import distance, make_query, project
from exactverify.queries.stages import accept_point


@pytest.fixture(scope="module")
def digits():
    module = zoo.digits_network()
    network = ev.load(module, input_shape=(64,))
    return network, module, zoo.load_digits_data()[2]


def test_domain_tolerance_clips_noise_and_refuses_more(digits):
    network, _, x_test = digits
    x = x_test[0].copy()
    x[0] = 1.0 + DOMAIN_TOLERANCE / 2
    query = make_query(network, x, "linf", None, None, (0.0, 1.0), ev.DEFAULT_MARGIN)
    assert query.x[0] == 1.0  # clipped into the domain
    x[0] = 1.0 + 100 * DOMAIN_TOLERANCE
    with pytest.raises(ev.InvalidInputError, match="outside the input domain"):
        ev.verify(network, x, 0.01, domain=(0.0, 1.0))


def test_points_outside_the_region_are_projected_and_said_so(digits):
    network, module, x_test = digits
    query = make_query(network, x_test[0], "linf", 9, None, (0.0, 1.0), ev.DEFAULT_MARGIN, module)
    far = np.clip(x_test[0] + 0.5, 0, 1)  # far outside a 0.2 ball
    finding = accept_point(query, far, 0.2, "test")
    assert np.abs(finding.point - x_test[0]).max() <= 0.2  # in float64, not just up to rounding
    assert "outside the region" in finding.reason
    near = np.clip(x_test[0] + REGION_TOLERANCE / 10, 0, 1)
    assert "outside the region" not in accept_point(query, near, 0.0, "test").reason


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_projection_lands_inside_the_ball_in_float64(digits, norm):
    """Rounding in ``x + clip(p - x, -eps, eps)`` used to leave points an ulp outside (distance
    0.020000000000000018 at eps 0.02): every projected point now has distance <= eps exactly,
    stays in the domain, and moves at most a few ulps further than the plain projection."""
    network, _, _ = digits
    rng = np.random.default_rng(3)
    outside_before = 0
    for trial in range(200):
        x = rng.choice([0.0, 0.1, 0.3, 0.5, 0.7, 1.0], 64) if trial % 2 else rng.uniform(0, 1, 64)
        eps = float(rng.choice([0.02, 0.1, 0.3, 1e-3, 0.07])) * (8 if norm == "l1" else 1)
        query = make_query(network, x, norm, None, None, (0.0, 1.0), ev.DEFAULT_MARGIN)
        far = np.clip(x + rng.choice([-1.0, 1.0], 64), 0.0, 1.0)
        point = project(query, far, eps)
        plain = np.clip(x + np.clip(far - x, -eps, eps), 0, 1) if norm == "linf" else None
        if plain is not None:
            outside_before += distance(query, plain) > eps
            assert np.abs(point - plain).max() <= 1e-15
        assert distance(query, point) <= eps
        assert point.min() >= 0.0 and point.max() <= 1.0
        assert distance(query, point) >= eps * (1 - 1e-9)  # still on the ball's edge: not shrunk
    if norm == "linf":
        assert outside_before > 0  # the case the ulp steps exist for does occur


def test_model_must_be_a_torch_module(digits):
    network, _, x_test = digits
    with pytest.raises(ev.InvalidInputError, match="model must be a torch nn.Module"):
        ev.verify(network, x_test[0], 0.01, domain=(0.0, 1.0), model="not a model")


def test_model_that_does_not_fit_the_network_is_refused_before_any_solve(digits):
    network, _, x_test = digits
    wrong_input = torch.nn.Sequential(torch.nn.Linear(65, 10))
    with pytest.raises(ev.ShapeMismatchError, match=r"model does not accept x of the network's input shape \(64,\)"):
        ev.verify(network, x_test[0], 0.01, domain=(0.0, 1.0), model=wrong_input)
    wrong_output = torch.nn.Sequential(torch.nn.Linear(64, 3))
    with pytest.raises(ev.ShapeMismatchError, match="model gives .*3.* the network has 10 outputs"):
        ev.minimal_distortion(network, x_test[0], domain=(0.0, 1.0), model=wrong_output)


@pytest.mark.parametrize("domain, error, message", [
    ((0.0, 1.0, 2.0), ev.InvalidInputError, "domain must be a pair"),
    (1.0, ev.InvalidInputError, "domain must be a pair"),
    ("0,1", ev.InvalidInputError, "domain must be a pair"),
    ((np.zeros(3), np.ones(3)), ev.ShapeMismatchError, r"domain low has shape \(3,\)"),
    ((float("nan"), 1.0), ev.InvalidInputError, "domain low contains NaN"),
    ((0.0, "one"), ev.InvalidInputError, "domain high must be a number"),
    ((1.0, 0.0), ev.InvalidInputError, "domain lower bound exceeds upper bound"),
])
def test_bad_domains_are_named(digits, domain, error, message):
    network, _, x_test = digits
    with pytest.raises(error, match=message):
        ev.verify(network, x_test[0], 0.01, domain=domain)


def test_domains_broadcast_or_come_flat(digits):
    network, _, x_test = digits
    grid = make_query(network, x_test[0], "linf", None, None, (np.zeros((1, 64)), 1.0), ev.DEFAULT_MARGIN)
    flat = make_query(network, x_test[0], "linf", None, None, (np.zeros(64), np.ones(64)), ev.DEFAULT_MARGIN)
    assert grid.domain[0].shape == flat.domain[0].shape == (64,)
    assert np.all(grid.domain[1] == 1.0) and np.all(flat.domain[1] == 1.0)


@pytest.mark.parametrize("arguments, message", [
    ({"eps": True}, "eps must be a number, got True"),
    ({"target": True}, "target=True is not a class index"),
    ({"label": False}, "label=False is not a class index"),
    ({"margin": "1e-5"}, "margin must be a number"),
    ({"attack_first": "no"}, "attack_first must be True or False"),
    ({"x": ["a"] * 64}, "x must be an array of numbers"),
    ({"x": np.zeros(64) + 0.5j}, "x must be real"),
])
def test_lax_types_are_refused_not_coerced(digits, arguments, message):
    network, _, x_test = digits
    call = {"x": x_test[0], "eps": 0.01, "domain": (0.0, 1.0), **arguments}
    with pytest.raises(ev.InvalidInputError, match=message):
        ev.verify(network, **call)


def test_tol_finer_than_the_solvers_tolerance_is_refused(digits):
    from exactverify.queries.distortion import MIN_TOL

    network, _, x_test = digits
    with pytest.raises(ev.InvalidInputError, match="tol must be >= 1e-06"):
        ev.minimal_distortion(network, x_test[0], domain=(0.0, 1.0), tol=MIN_TOL / 10)


def test_bounds_too_large_for_big_m_are_an_input_error_not_a_solver_crash():
    """Without a domain, eps = 1e20 gives bounds at SCIP's infinity (it used to stop with
    pyscipopt's "error in input data"); huge weights do the same inside a unit domain."""
    from encoders.milp.network import MAX_BIG_M
    from exactverify.ir import Dense, Network, ReLU

    net = Network((1,), (Dense(np.array([[1.0]]), np.array([0.0])), ReLU(),
                         Dense(np.array([[0.0], [1.0]]), np.array([1e6, 0.0]))))
    for backend in ("scip", "ortools"):
        with pytest.raises(ev.InvalidInputError, match=r"bounds\[0\] reach 1e\+20, beyond MAX_BIG_M.*input domain"):
            ev.verify(net, np.array([0.0]), 1e20, attack_first=False, backend=backend)
    big = Network((1,), (Dense(np.array([[MAX_BIG_M * 100]]), np.array([0.0])), ReLU(),
                         Dense(np.array([[0.0], [1.0]]), np.array([1.0, 0.0]))))
    with pytest.raises(ev.InvalidInputError, match=r"bounds\[1\] reach"):
        ev.verify(big, np.array([0.2]), 0.5, domain=(0.0, 1.0), attack_first=False)


def test_time_limit_bounds_every_stage():
    """An L1 query whose attack, certification and bisection would take far longer stops near its
    limit (the slack covers one PGD step or bound pass overrunning), with proved bounds.

    (The 64-input digits net no longer serves: polishing plus one closing probe ends its L1
    queries at tol 1e-6 in 0.3 s.) The 784-24-24-24-10 zoo net at a random input does not."""
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    x = np.random.default_rng(1).uniform(0.0, 1.0, 784)
    result = ev.minimal_distortion(network, x, norm="l1", domain=(0.0, 1.0),
                                   method="bisection", tol=1e-6, time_limit=1.0)
    assert result.status == "unknown" and result.lower <= result.upper
    assert result.seconds < 6.0


def _relu_mlp(width: int) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, 4))


def test_case_split_neurons_count_relus_and_pools_not_affine_layers():
    from exactverify.queries.checks import case_split_neurons

    assert case_split_neurons(ev.load(_relu_mlp(16), input_shape=(8,))) == 32
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 3 * 3, 3))
    relu_inputs = pool_inputs = 2 * 6 * 6
    assert case_split_neurons(ev.load(conv.eval(), input_shape=(1, 8, 8))) == relu_inputs + pool_inputs


def test_z3_without_a_time_limit_on_a_larger_network_is_warned(recwarn):
    """z3 is for tiny networks (Z3_SMALL_NETWORK); a query that may not end says so. The tiny eps is
    proved by bounds, so the query itself ends at once."""
    from exactverify.queries.checks import Z3_SMALL_NETWORK

    x = np.full(8, 0.1)
    with pytest.warns(UserWarning, match=r"backend 'z3' decides tiny networks only; .* 32 piecewise-linear neurons "
                                         rf"\(more than Z3_SMALL_NETWORK = {Z3_SMALL_NETWORK}\).*pass time_limit"):
        verdict = ev.verify(_relu_mlp(16), x, 1e-6, backend="z3")
    assert verdict.status == "robust"
    with pytest.warns(UserWarning, match="backend 'z3' decides tiny networks only"):
        ev.minimal_distortion(_relu_mlp(16), x, backend="z3", time_limit=None, tol=10.0)
    recwarn.clear()
    ev.verify(_relu_mlp(16), x, 1e-6, backend="z3", time_limit=5)  # a time limit bounds it
    ev.verify(_relu_mlp(8), x, 1e-6, backend="z3")  # 16 neurons: small enough
    ev.verify(_relu_mlp(16), x, 1e-6, backend="scip")
    assert not [w for w in recwarn if "z3" in str(w.message)]


def _onnx_mlp(path, weights) -> None:
    """Save the Dense/ReLU chain ``weights`` [(W, b), ...] as a float32 Gemm/Relu ONNX model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "x"
    for k, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [name, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        name = f"z{k}"
        if k < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [name], [f"r{k}"]))
            name = f"r{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _mlp_weights(seed: int = 3):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(8, 4)), rng.normal(size=8)), (rng.normal(size=(3, 8)), rng.normal(size=3))]


def test_a_model_path_re_checks_counterexamples_on_the_file_itself(tmp_path):
    """For an ONNX path the counterexample is re-run by onnxruntime (model_validated), not only on the IR."""
    from exactverify.loaders import SourceModel
    from exactverify.queries.checks import as_network

    path = tmp_path / "mlp.onnx"
    _onnx_mlp(path, _mlp_weights())
    network, source = as_network(str(path))
    assert isinstance(source, SourceModel)
    x = np.array([0.3, -0.2, 0.5, 0.1])
    np.testing.assert_allclose(source(x[None]), network.forward(torch.as_tensor(x)[None]).numpy(), atol=1e-4)
    result = ev.minimal_distortion(str(path), x, "linf", time_limit=60)
    verdict = ev.verify(str(path), x, result.upper * 1.01)
    assert verdict.status == "not_robust" and verdict.validated and verdict.model_validated is True
    assert ev.verify(network, x, result.upper * 1.01).model_validated is None  # a Network alone has no source


def test_a_source_that_disagrees_with_the_ir_turns_a_counterexample_into_unknown(tmp_path):
    """A file evaluation that keeps the label (here: a stand-in whose logits favour it) makes the
    IR's counterexample fail its re-check: unknown, never not_robust, never robust."""
    from exactverify.loaders import SourceModel

    path = tmp_path / "mlp.onnx"
    _onnx_mlp(path, _mlp_weights())
    network = ev.load(str(path))
    x = np.array([0.3, -0.2, 0.5, 0.1])
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    stubborn = SourceModel("stubborn", lambda points: np.eye(3)[[label] * len(points)] * 100.0)
    verdict = ev.verify(network, x, 10.0, model=stubborn)
    assert verdict.status == "unknown" and verdict.validated and verdict.model_validated is False
    assert "failed the float64 re-check on the user's model" in verdict.reason


def test_an_nnet_path_re_checks_on_the_parsed_file(tmp_path):
    from pathlib import Path

    from exactverify.loaders import SourceModel
    from exactverify.queries.checks import as_network

    network, source = as_network(Path(__file__).parent / "data" / "tiny.nnet")
    assert isinstance(source, SourceModel)
    x = np.array([[10.0, 0.5], [3.0, 1.0]])
    np.testing.assert_allclose(source(x), [[5.0], [3.0]], atol=1e-12)  # hand-computed (tests/test_loaders.py)
    np.testing.assert_allclose(network.forward(torch.as_tensor(x)).numpy(), [[5.0], [3.0]], atol=1e-12)


def test_a_source_model_of_the_wrong_size_is_refused_at_the_entry():
    from exactverify.loaders import SourceModel

    network = ev.load(_relu_mlp(8), input_shape=(8,))
    with pytest.raises(ev.ShapeMismatchError, match="model gives .* the network has 4 outputs"):
        ev.verify(network, np.zeros(8), 0.1, model=SourceModel("two", lambda p: np.zeros((len(p), 2))))
