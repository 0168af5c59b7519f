"""Loaders (torch, ONNX, .nnet) and exact transforms, against independent oracles.

Oracles: the torch module itself in float64 (torch), onnxruntime on a file exported in the
test (ONNX), hand-computed outputs (.nnet). Every comparison uses fresh random inputs, not
the ones the loader's own check used.
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from exactverify import ir
from exactverify.errors import InvalidInputError, LoadMismatchError, ShapeMismatchError, UnsupportedLayerError
from exactverify.loaders import ONNX_ATOL, ONNX_FLOAT16_ATOL, ONNX_FLOAT16_RTOL, ONNX_RTOL, check_against, load
from exactverify.loaders.onnx_loader import run_onnx
from exactverify.transforms import fold_affine, fold_into_next, fold_into_previous, merge_dense

DATA = Path(__file__).resolve().parent / "data"
#: float64 IR vs float64 torch: only summation order and folding differ.
EXACT_TOL = 1e-10


def _torch_out(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The oracle: a float64 eval-mode copy of the module itself."""
    reference = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        return reference(torch.as_tensor(x)).reshape(len(x), -1).numpy()


def _ir_out(network: ir.Network, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1).numpy()


def _randomise_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))


def _assert_matches_torch(module: nn.Module, input_shape, samples: int = 40, seed: int = 1) -> ir.Network:
    network = load(module, input_shape)
    x = np.random.default_rng(seed).standard_normal((samples, *network.input_shape)) * 2
    expected = _torch_out(module, x)
    got = _ir_out(network, x)
    np.testing.assert_allclose(got, expected, rtol=EXACT_TOL, atol=EXACT_TOL)
    return network


def _kinds(network: ir.Network) -> list[str]:
    return [layer.kind for layer in network.layers]


# ------------------------------------------------------------------- torch
def test_sequential_mlp_infers_input_shape_and_matches_torch():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 8), nn.Identity(),
                           nn.ReLU(), nn.Linear(8, 3))
    with pytest.warns(UserWarning, match=r"module Sequential is in training mode.*Dropout"):
        network = _assert_matches_torch(module, None)
    assert network.input_shape == (4,)
    assert _kinds(network) == ["Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert module.training, "load must not switch the caller's module to eval mode"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(module.eval())  # in eval mode, or in training mode without BatchNorm/Dropout: no warning
        load(nn.Sequential(nn.Linear(4, 2), nn.ReLU()).train())


def test_bare_linear_module_infers_input_shape():
    torch.manual_seed(0)
    network = _assert_matches_torch(nn.Linear(5, 3), None)
    assert network.input_shape == (5,) and _kinds(network) == ["Dense"]


def test_conv_maxpool_padding_batchnorm_avgpool_folds_batchnorm():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
    )
    _randomise_bn(module[1], 2)
    _randomise_bn(module[7], 3)
    network = _assert_matches_torch(module.eval(), (2, 8, 8))
    assert _kinds(network) == ["Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Dense", "ReLU", "Dense"]
    pool = network.layers[2]
    assert pool.kernel == (3, 3) and pool.stride == (2, 2) and pool.padding == (1, 1)


def test_batchnorm_without_preceding_affine_becomes_elementwise_affine():
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 2))
    _randomise_bn(module[2], 4)
    network = _assert_matches_torch(module.eval(), (1, 6, 6))
    assert _kinds(network) == ["Conv2d", "ReLU", "ElementwiseAffine", "Flatten", "Dense"]
    assert network.layers[2].scale.shape == (3, 1, 1)


def test_activations_leaky_hardtanh_sigmoid_tanh():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Linear(5, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6), nn.Hardtanh(-0.5, 0.7),
                           nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))
    network = _assert_matches_torch(module, None)
    assert _kinds(network)[1::2] == ["LeakyReLU", "Clamp", "Sigmoid", "Tanh"]
    assert network.layers[1].negative_slope == 0.2
    assert (network.layers[3].low, network.layers[3].high) == (-0.5, 0.7)


class _Normalised(nn.Module):
    """A custom module fx traces: normalisation by buffers, functional ops, views."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 2.0, 1.5]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc1 = nn.Linear(64, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.conv(x))
        x = F.max_pool2d(x, 2, stride=1, padding=1)
        x = x.view(x.size(0), -1)
        x = torch.clamp(self.fc1(x) * 2.0 + 1.0, min=0.0)
        x = F.leaky_relu(x, 0.05)
        x = torch.tanh(F.hardtanh(x, -2.0, 2.0))
        return torch.sigmoid(self.fc2(x)) - 0.5


def test_fx_traced_custom_module_with_normalisation():
    torch.manual_seed(4)
    module = _Normalised()
    network = _assert_matches_torch(module, (3, 7, 7))
    kinds = _kinds(network)
    assert kinds[0] == "ElementwiseAffine", "(x - mean) / std must become one ElementwiseAffine"
    assert kinds.count("ElementwiseAffine") == 2, kinds  # input normalisation and the final '- 0.5'
    assert network.layers[0].scale.shape == (3, 1, 1)


def test_clamp_with_one_side_is_exact():
    class OneSided(nn.Module):
        def forward(self, x):
            return torch.clamp(x, max=0.3) + torch.clamp(x, min=-0.2) * 0

    # the sum of two branches is unsupported; each side alone is exact
    class Low(nn.Module):
        def forward(self, x):
            return torch.clamp(x, min=-0.2)

    class High(nn.Module):
        def forward(self, x):
            return x.clamp(max=0.3)

    for module in (Low(), High()):
        network = _assert_matches_torch(module, (7,))
        assert "ReLU" in _kinds(network)
    with pytest.raises(UnsupportedLayerError, match="combining 2 network tensors"):
        load(OneSided(), (7,))


# ----------------------------------------------------------- torch errors
def test_nan_weight_names_the_layer():
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        module[2].weight[1, 1] = float("nan")
    with pytest.raises(InvalidInputError, match=r"layer '_2' \(Linear\).*NaN"):
        load(module)


def test_nan_batchnorm_statistic_names_the_layer():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    module[1].running_var[0] = float("nan")
    with pytest.raises(InvalidInputError, match=r"'_1' \(BatchNorm1d\).*NaN"):
        load(module)


def test_wrong_input_shape_is_a_shape_error():
    module = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(48, 2))
    with pytest.raises(ShapeMismatchError, match=r"input_shape \(3, 6, 6\) does not fit") as raised:
        load(module, (3, 6, 6))
    assert "While executing" not in str(raised.value) and "traceback" not in str(raised.value)  # torch.fx's tail
    with pytest.raises(ShapeMismatchError, match=r"\(RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                                                 r"\(1x4 and 5x3\)\)$"):
        load(nn.Sequential(nn.Flatten(), nn.Linear(5, 3)), (4,))
    with pytest.raises(InvalidInputError, match="input_shape is required"):
        load(module)
    with pytest.raises(InvalidInputError, match="input_shape must be a non-empty tuple of positive ints"):
        load(module, (0, 6, 6))
    with pytest.raises(UnsupportedLayerError, match=r"Linear on a non-flat input of shape \(1, 3\)"):
        load(nn.Sequential(nn.Linear(3, 2)), (1, 3))  # a batch dimension given by mistake
    assert load(nn.Sequential(nn.Linear(3, 2)), 3).input_shape == (3,)


def test_two_different_unsupported_ops_are_named_in_one_error():
    module = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(UnsupportedLayerError, match=r"2 unsupported.*'_1' \(GELU\).*'_3' \(Softmax\)") as info:
        load(module)
    assert [name for name, _ in info.value.unsupported] == ["_1", "_3"]


def test_residual_connection_and_pool_options_are_unsupported():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.relu(self.fc(x)) + x

    with pytest.raises(UnsupportedLayerError, match="combining 2 network tensors"):
        load(Residual())
    with pytest.raises(UnsupportedLayerError, match=r"MaxPool2d: dilation=2.*ceil_mode=True"):
        load(nn.Sequential(nn.MaxPool2d(2, dilation=2, ceil_mode=True)), (1, 6, 6))


def test_pickle_paths_are_refused_without_opening(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a pickle; must never be read")
    with pytest.raises(InvalidInputError, match=r"weights_only=True"):
        load(path)
    with pytest.raises(InvalidInputError, match="unknown model file type"):
        load(tmp_path / "model.h5")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load(tmp_path / "missing.onnx")


def test_check_raises_load_mismatch_naming_the_deviation():
    network = load(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(LoadMismatchError, match=r"max \|diff\| = 1\.000e-03"):
        check_against(network, lambda x: _ir_out(network, x) + 1e-3, samples=8, rtol=1e-8, atol=1e-8)
    assert check_against(network, lambda x: _ir_out(network, x), samples=8, rtol=0.0, atol=0.0) == 0.0
    with pytest.raises(InvalidInputError, match="check_samples"):
        load(nn.Sequential(nn.Linear(3, 2)), check_samples=0)


# -------------------------------------------------------------------- ONNX
def _export(module: nn.Module, input_shape, path: Path) -> Path:
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, *input_shape),), str(path), dynamo=False)
    return path


def _ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1].astype(np.float32)})[0].reshape(1, -1)
                           for i in range(len(x))])


def _assert_matches_ort(path: Path, samples: int = 20) -> ir.Network:
    pytest.importorskip("onnxruntime")
    network = load(path)
    x = np.random.default_rng(7).standard_normal((samples, *network.input_shape)).astype(np.float32)
    expected = _ort(path, x)
    got = _ir_out(network, x.astype(np.float64))
    allowed = ONNX_ATOL + ONNX_RTOL * np.abs(expected).max()
    assert np.abs(got - expected).max() <= allowed
    return network


def test_onnx_export_conv_batchnorm_pools_matches_onnxruntime_and_torch(tmp_path):
    torch.manual_seed(5)
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),
        nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 6), nn.LeakyReLU(0.1), nn.Linear(6, 6), nn.Hardtanh(-1.0, 0.5),
        nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3),
    )
    _randomise_bn(module[2], 6)
    path = _export(module, (2, 8, 8), tmp_path / "conv.onnx")
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MaxPool" in {n.op_type for n in onnx.load(str(path)).graph.node}
    network = _assert_matches_ort(path)
    assert network.input_shape == (2, 8, 8)
    assert network.layers[3].padding == (1, 1), "MaxPool pads must not be ignored"
    torch_network = load(module, (2, 8, 8))
    x = np.random.default_rng(8).standard_normal((10, 2, 8, 8))
    np.testing.assert_allclose(_ir_out(network, x), _ir_out(torch_network, x), rtol=1e-5, atol=1e-5)


def test_onnx_export_of_custom_module_with_views_and_normalisation(tmp_path):
    torch.manual_seed(6)
    path = _export(_Normalised(), (3, 7, 7), tmp_path / "custom.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Sub", "Div", "Reshape"} <= ops
    network = _assert_matches_ort(path)
    assert _kinds(network)[0] == "ElementwiseAffine"


def _graph_model(nodes, inits, input_shape, output_shape, opset=13, inits_as_inputs=False):
    initializers = [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f"
                                                       else np.int64), name) for name, v in inits.items()]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)]
    if inits_as_inputs:
        inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in initializers]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                   output_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_hand_built_onnx_ops_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(9)
    inits = {
        "mean": rng.standard_normal((1, 1, 1, 4)), "w1": rng.standard_normal((4, 6)), "b1": rng.standard_normal(6),
        "axes": np.array([2]), "lo": np.array(-0.3), "w2": rng.standard_normal((6, 3)), "b2": rng.standard_normal(3),
        "scale": np.array([2.0]),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["a"]),
        helper.make_node("LeakyRelu", ["a"], ["l"], alpha=0.3),
        helper.make_node("Unsqueeze", ["l", "axes"], ["u"]),
        helper.make_node("Squeeze", ["u", "axes"], ["q"]),
        helper.make_node("Clip", ["q", "lo", ""], ["c"]),
        helper.make_node("Dropout", ["c"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32(1.5), "k")),
        helper.make_node("Mul", ["k", "i"], ["mk"]),
        helper.make_node("Gemm", ["mk", "w2", "b2"], ["g"], alpha=0.5, beta=2.0),
        helper.make_node("Div", ["g", "scale"], ["y"]),
    ]
    model = _graph_model(nodes, inits, [1, 1, 1, 4], [1, 3], inits_as_inputs=True)
    onnx.checker.check_model(model)
    path = tmp_path / "ops.onnx"
    onnx.save(model, str(path))
    network = _assert_matches_ort(path)
    assert network.input_shape == (1, 1, 4)
    assert "LeakyReLU" in _kinds(network) and "ReLU" in _kinds(network)


def test_onnx_shape_gather_concat_reshape_is_folded(tmp_path):
    """``x.view(x.size(0), -1)`` as the TorchScript exporter writes it with a dynamic batch."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1),
    ]
    inits = {"zero": np.array(0), "axes": np.array([0]), "minus_one": np.array([-1]),
             "w": np.random.default_rng(13).standard_normal((2, 6))}
    model = _graph_model(nodes, inits, ["N", 2, 3], ["N", 2])
    path = tmp_path / "view.onnx"
    onnx.save(model, str(path))
    network = _assert_matches_ort(path)
    assert _kinds(network) == ["Flatten", "Dense"]


def test_onnx_check_without_onnxruntime_uses_reference_evaluator(tmp_path, monkeypatch):
    torch.manual_seed(14)
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, padding=1), nn.Flatten(),
                           nn.Linear(18, 2))
    path = _export(module, (1, 4, 4), tmp_path / "small.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    network = load(path)
    bad = onnx.load(str(path))
    for init in bad.graph.initializer:  # corrupt the file after loading: the check must notice
        if init.name.endswith("weight") and len(init.dims) == 2:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    with pytest.raises(LoadMismatchError, match="deviates from the source"):
        check_against(network, lambda x: run_onnx(bad, x), samples=16, rtol=ONNX_RTOL, atol=ONNX_ATOL,
                      dtype=np.float32)


def test_onnx_unsupported_nodes_listed_together(tmp_path):
    nodes = [
        helper.make_node("Softmax", ["x"], ["s"], name="soft"),
        helper.make_node("Erf", ["s"], ["e"], name="erf"),
        helper.make_node("Relu", ["e"], ["y"], name="relu"),
    ]
    path = tmp_path / "bad.onnx"
    onnx.save(_graph_model(nodes, {}, [1, 4], [1, 4]), str(path))
    with pytest.raises(UnsupportedLayerError, match=r"'soft' \(Softmax\).*'erf' \(Erf\)") as info:
        load(path)
    assert len(info.value.unsupported) == 2


def test_onnx_asymmetric_pads_and_wrong_input_shape(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], pads=[0, 0, 1, 1])]
    path = tmp_path / "pool.onnx"
    onnx.save(_graph_model(nodes, {}, [1, 1, 4, 4], [1, 1, 4, 4]), str(path))
    with pytest.raises(UnsupportedLayerError, match=r"'pool' \(MaxPool: asymmetric pads"):
        load(path)
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    onnx.save(_graph_model(nodes, {}, [1, 3], [1, 3]), str(path))
    with pytest.raises(ShapeMismatchError, match=r"input_shape \(4,\) does not match"):
        load(path, (4,))


@pytest.mark.parametrize("input_shape", [None, (3,)])
def test_onnx_input_without_a_batch_dimension_is_named(input_shape):
    """A rank-1 graph input has no batch dimension to drop: said so, with or without input_shape."""
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"])], {}, [3], [3])
    with pytest.raises(InvalidInputError, match=r"graph input 'x' has shape \[3\], a single dimension and no batch "
                                                r"dimension.*\[1, 3\]"):
        load(model, input_shape)


def test_onnx_nan_initializer_names_the_node(tmp_path):
    weight = np.ones((3, 2))
    weight[0, 1] = np.nan
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")]
    path = tmp_path / "nan.onnx"
    onnx.save(_graph_model(nodes, {"w": weight}, [1, 3], [1, 2]), str(path))
    with pytest.raises(InvalidInputError, match=r"layer 'fc' \(Gemm\).*NaN"):
        load(path)


def test_garbage_onnx_file_is_an_input_error(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\xffnot protobuf" * 10)
    with pytest.raises(InvalidInputError, match="could not parse ONNX|no graph input"):
        load(path)


# -------------------------------------------------------------------- .nnet
# Hand-computed from tests/data/tiny.nnet (see its comments): normalised inputs and outputs.
TINY_NORMALISED = [((0.5, 0.25), 1.0), ((-0.2, 0.5), 0.5), ((0.4, -0.5), 2.3), ((0.2, 0.5), 0.2)]


def test_tiny_nnet_normalised_outputs():
    network = load(DATA / "tiny.nnet", normalized=True)
    x = np.array([p for p, _ in TINY_NORMALISED])
    np.testing.assert_allclose(_ir_out(network, x)[:, 0], [y for _, y in TINY_NORMALISED], atol=1e-12)
    np.testing.assert_allclose(network.input_domain[0], [-0.5, -0.5])
    np.testing.assert_allclose(network.input_domain[1], [0.5, 0.5])
    assert _kinds(network) == ["Dense", "ReLU", "Dense"]


def test_tiny_nnet_raw_outputs():
    network = load(DATA / "tiny.nnet")
    raw = np.array([(xn[0] * 10 + 5, xn[1] * 2) for xn, _ in TINY_NORMALISED])
    assert raw.tolist() == [[10.0, 0.5], [3.0, 1.0], [9.0, -1.0], [7.0, 1.0]]
    np.testing.assert_allclose(_ir_out(network, raw)[:, 0], [5.0, 3.0, 10.2, 1.8], atol=1e-12)
    np.testing.assert_allclose(network.input_domain[0], [0.0, -1.0])
    np.testing.assert_allclose(network.input_domain[1], [10.0, 1.0])
    assert _kinds(network) == ["ElementwiseAffine", "Dense", "ReLU", "Dense", "ElementwiseAffine"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-1], "file ends early; expected layer 2 bias 1"),
        (lambda lines: lines[:9] + ["1.0,x,"] + lines[10:], r"line 10 \(layer 1 weight row 1\) is not comma-separated"),
        (lambda lines: lines[:9] + ["1.0,2.0,3.0,"] + lines[10:], r"line 10 .* has 3 values, expected 2"),
        (lambda lines: lines + ["7.0,"], "unexpected data after the last layer"),
        (lambda lines: lines[:3] + ["3,2,1,"] + lines[4:], "disagree with inputSize"),
        (lambda lines: lines[:9] + ["nan,1.0,"] + lines[10:], "NaN"),
    ],
)
def test_malformed_nnet_raises_clear_error(tmp_path, edit, message):
    lines = (DATA / "tiny.nnet").read_text().splitlines()
    path = tmp_path / "bad.nnet"
    path.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(InvalidInputError, match=message):
        load(path)


# -------------------------------------------------------------- transforms
def _random_chain(seed: int) -> ir.Network:
    rng = np.random.default_rng(seed)
    layers = [
        ir.ElementwiseAffine(rng.uniform(0.5, 2, (2, 1, 1)), rng.standard_normal((2, 1, 1))),
        ir.Conv2d(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)),
        ir.ElementwiseAffine(rng.uniform(0.5, 2, (3, 1, 1)), rng.standard_normal((3, 1, 1))),
        ir.ReLU(),
        ir.ElementwiseAffine(rng.uniform(0.5, 2, (3, 4, 4)), rng.standard_normal((3, 4, 4))),
        ir.Flatten(),
        ir.Dense(rng.standard_normal((5, 48)), rng.standard_normal(5)),
        ir.Dense(rng.standard_normal((4, 5)), rng.standard_normal(4)),
        ir.ElementwiseAffine(np.ones(4), np.zeros(4)),
        ir.ReLU(),
        ir.Reshape((2, 2)),
        ir.Flatten(),
        ir.Dense(rng.standard_normal((2, 4)), rng.standard_normal(2)),
        ir.ElementwiseAffine(2.0, -1.0),
        ir.ElementwiseAffine(rng.standard_normal(2), 0.5),
    ]
    return ir.Network((2, 6, 6), layers)


def test_fold_affine_is_exact_and_shorter():
    network = _random_chain(10)
    folded = fold_affine(network)
    assert _kinds(folded) == ["Conv2d", "ReLU", "Flatten", "Dense", "ReLU", "Dense"]
    x = np.random.default_rng(11).standard_normal((50, 2, 6, 6))
    np.testing.assert_allclose(_ir_out(folded, x), _ir_out(network, x), rtol=1e-10, atol=1e-10)


def test_fold_helpers_refuse_inexact_folds():
    rng = np.random.default_rng(12)
    conv = ir.Conv2d(rng.standard_normal((3, 2, 3, 3)), np.zeros(3), padding=(1, 1))
    spatial = ir.ElementwiseAffine(rng.standard_normal((3, 4, 4)), 0.0)
    assert fold_into_previous(conv, spatial, (3, 4, 4)) is None  # varies within a channel
    shifted = ir.ElementwiseAffine(np.ones((2, 1, 1)), np.ones((2, 1, 1)))
    assert fold_into_next(shifted, conv, (2, 4, 4)) is None  # shift would leak into zero padding
    unpadded = ir.Conv2d(conv.weight, conv.bias)
    folded = fold_into_next(shifted, unpadded, (2, 4, 4))
    x = torch.as_tensor(rng.standard_normal((5, 2, 4, 4)))
    np.testing.assert_allclose(folded.forward(x), unpadded.forward(shifted.forward(x)), atol=1e-12)
    d1 = ir.Dense(rng.standard_normal((4, 3)), rng.standard_normal(4))
    d2 = ir.Dense(rng.standard_normal((2, 4)), rng.standard_normal(2))
    y = torch.as_tensor(rng.standard_normal((5, 3)))
    np.testing.assert_allclose(merge_dense(d1, d2).forward(y), d2.forward(d1.forward(y)), atol=1e-12)


# ----------------------------------------------------------------- bad input named at the entry
@pytest.mark.parametrize(("make", "message"), [
    (lambda: ir.Conv2d(np.ones((2, 1, 3, 3)), np.zeros(2), stride=(0, 1)), r"Conv2d\.stride must be >= 1"),
    (lambda: ir.Conv2d(np.ones((2, 1, 3, 3)), np.zeros(2), dilation=0), r"Conv2d\.dilation must be >= 1"),
    (lambda: ir.Conv2d(np.ones((2, 1, 3, 3)), np.zeros(2), padding=-1), r"Conv2d\.padding must be >= 0"),
    (lambda: ir.Conv2d(np.ones((2, 1, 0, 3)), np.zeros(2)), r"Conv2d\.weight must have a kernel of at least 1x1"),
    (lambda: ir.Conv2d(np.ones((2, 1, 3, 3)), np.zeros(2), groups=1.5), r"Conv2d\.groups must be an int"),
    (lambda: ir.MaxPool2d(2, stride=0), r"MaxPool2d\.stride must be >= 1"),
    (lambda: ir.MaxPool2d((0, 2)), r"MaxPool2d\.kernel must be >= 1"),
    (lambda: ir.MaxPool2d(2, padding=-1), r"MaxPool2d\.padding must be >= 0"),
    (lambda: ir.AvgPool2d(2, stride=(1, 0)), r"AvgPool2d\.stride must be >= 1"),
    (lambda: ir.AvgPool2d(2, padding=(0, -1)), r"AvgPool2d\.padding must be >= 0"),
    (lambda: ir.MaxPool2d("ab"), r"MaxPool2d\.kernel must be an int or a pair of ints"),
])
def test_ir_conv_and_pool_attributes_are_validated_naming_layer_and_attribute(make, message):
    with pytest.raises(InvalidInputError, match=message):
        make()


@pytest.mark.parametrize(("op", "attrs", "message"), [
    ("Conv", {"strides": [0, 0]}, "strides must be >= 1"),
    ("Conv", {"dilations": [0, 0]}, "dilations must be >= 1"),
    ("Conv", {"pads": [-1, -1, -1, -1]}, "pads must be >= 0"),
    ("Conv", {"strides": [0, 0], "auto_pad": "SAME_UPPER"}, "strides must be >= 1"),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [0, 0]}, "strides must be >= 1"),
])
def test_onnx_invalid_conv_and_pool_attributes_name_the_node(tmp_path, op, attrs, message):
    inputs = ["x", "w"] if op == "Conv" else ["x"]
    nodes = [helper.make_node(op, inputs, ["y"], name="node", **attrs)]
    inits = {"w": np.ones((2, 1, 3, 3))} if op == "Conv" else {}
    path = tmp_path / "bad.onnx"
    onnx.save(_graph_model(nodes, inits, ["N", 1, 5, 5], ["N", 2, 3, 3], opset=17), str(path))
    for check in (True, False):
        with pytest.raises(InvalidInputError, match=rf"layer 'node' \({op}\): {message}"):
            load(path, check=check)


def test_onnxruntime_failures_are_input_errors_naming_the_model(tmp_path):
    """A float64 weight on a float32 input, and an unreleased opset: onnxruntime refuses both."""
    weight = numpy_helper.from_array(np.ones((4, 3)), "w")  # float64
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [weight])
    mixed = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(mixed, str(tmp_path / "mixed.onnx"))
    with pytest.raises(InvalidInputError, match=r"onnxruntime cannot run ONNX model mixed: Type Error.*check=False"):
        load(tmp_path / "mixed.onnx")
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    onnx.save(_graph_model(nodes, {}, ["N", 4], ["N", 4], opset=99), str(tmp_path / "future.onnx"))
    with pytest.raises(InvalidInputError, match=r"onnxruntime cannot run ONNX model future: .*[Oo]pset 99"):
        load(tmp_path / "future.onnx")
    assert load(tmp_path / "future.onnx", check=False).input_shape == (4,)


def test_onnx_weight_shape_mismatch_is_a_shape_error_naming_the_node(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    path = tmp_path / "wrong.onnx"
    onnx.save(_graph_model(nodes, {"w": np.ones((5, 3))}, ["N", 4], ["N", 3]), str(path))
    with pytest.raises(ShapeMismatchError, match=r"layer 'fc' \(MatMul\): weight B of shape \(5, 3\) does not fit"):
        load(path)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    onnx.save(_graph_model(nodes, {"w": np.ones((2, 3, 3, 3))}, ["N", 1, 5, 5], ["N", 2, 3, 3]), str(path))
    with pytest.raises(ShapeMismatchError, match=r"layer 'conv' \(Conv\): weight W .* expects 3 input channels"):
        load(path)


def test_negative_batchnorm_variance_is_named_in_onnx_and_torch(tmp_path):
    stats = {"scale": np.ones(2), "bias": np.zeros(2), "mean": np.zeros(2), "var": np.array([1.0, -1.0])}
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], name="bn")]
    path = tmp_path / "bn.onnx"
    onnx.save(_graph_model(nodes, stats, ["N", 2], ["N", 2]), str(path))
    with pytest.raises(InvalidInputError, match=r"layer 'bn' \(BatchNormalization\): negative variance"):
        load(path)
    module = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    with torch.no_grad():
        module[1].running_var.copy_(torch.tensor([1.0, -1.0]))
    with pytest.raises(InvalidInputError, match=r"\(BatchNorm1d\): negative variance"):
        load(module)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, y):
        return self.fc(x + y)


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.lstm(x.unsqueeze(1))
        return self.fc(out[:, -1])


def test_torch_modules_are_refused_for_what_they_are_not_for_the_input_shape():
    with pytest.raises(UnsupportedLayerError, match=r"'y' \(second network input: forward takes 2 inputs \(x, y\)"):
        load(_TwoInputs())
    batch_stats = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU()).eval()
    with pytest.raises(UnsupportedLayerError, match=r"\(BatchNorm1d: batch norm without running statistics"):
        load(batch_stats)
    with pytest.raises(UnsupportedLayerError, match=r"'lstm' \(LSTM\)"):
        load(_Recurrent())
    with pytest.raises(UnsupportedLayerError, match=r"'lstm' \(LSTM"):  # as before, with an input_shape
        load(_Recurrent(), (4,))


def test_nnet_with_a_huge_input_domain_is_checked_on_a_finite_sub_box(tmp_path):
    text = (DATA / "tiny.nnet").read_text().replace("0.0,-1.0,\n10.0,1.0,", "-1e308,-1e308,\n1e308,1e308,")
    path = tmp_path / "wide.nnet"
    path.write_text(text)
    network = load(path)
    np.testing.assert_array_equal(network.input_domain[1], [1e308, 1e308])


def test_nnet_with_a_negative_range_maps_its_domain_in_both_units(tmp_path):
    """A negative input range flips the normalised domain's ends; both loads agree through the map."""
    text = (DATA / "tiny.nnet").read_text().replace("10.0,2.0,4.0,", "-10.0,2.0,4.0,")
    path = tmp_path / "flipped.nnet"
    path.write_text(text)
    normalised, raw = load(path, normalized=True), load(path)
    np.testing.assert_allclose(normalised.input_domain[0], [-0.5, -0.5])
    np.testing.assert_allclose(normalised.input_domain[1], [0.5, 0.5])
    x_raw = np.random.default_rng(0).uniform(raw.input_domain[0], raw.input_domain[1], size=(8, 2))
    x_normalised = (x_raw - [5.0, 0.0]) / [-10.0, 2.0]
    np.testing.assert_allclose((_ir_out(normalised, x_normalised) * 4.0 + 1.0), _ir_out(raw, x_raw), atol=1e-12)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("0.0,-1.0,\n10.0,1.0,", "0.0,2.0,\n10.0,1.0,", "input 1 has minimum 2 above its maximum 1"),
    ("10.0,2.0,4.0,", "10.0,0.0,4.0,",
     r"normalisation range 1 is zero \(entries 0-1 are the inputs', 2 the outputs'\)"),
])
def test_nnet_header_errors_name_the_entry(tmp_path, old, new, message):
    path = tmp_path / "bad.nnet"
    text = (DATA / "tiny.nnet").read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(InvalidInputError, match=message):
        load(path)


def test_check_against_names_non_finite_outputs_instead_of_a_nan_deviation():
    network = ir.Network((2,), (ir.Dense(np.eye(2), np.zeros(2)),), name="net")
    with pytest.raises(LoadMismatchError, match="net: the source gives NaN or infinite outputs"):
        check_against(network, lambda x: np.full((len(x), 2), np.nan), samples=4, rtol=0.0, atol=0.0)


@pytest.mark.parametrize(("options", "message"), [
    ({"rtol": "a"}, "rtol must be a finite number >= 0, got 'a'"),
    ({"atol": [1e-3]}, r"atol must be a finite number >= 0, got \[0.001\]"),
    ({"rtol": True}, "rtol must be a finite number >= 0, got True"),
    ({"check_samples": True}, "check_samples must be a positive int"),
])
def test_load_tolerances_must_be_numbers(options, message):
    with pytest.raises(InvalidInputError, match=message):
        load(DATA / "tiny.nnet", **options)


def _float16_mlp() -> onnx.ModelProto:
    """A 20-50-3 Gemm/Relu/Gemm model computed in float16 by onnxruntime."""
    rng = np.random.default_rng(0)
    weights = {"W1": rng.normal(size=(50, 20)) / 4.5, "b1": rng.normal(size=50),
               "W2": rng.normal(size=(3, 50)) / 7.0, "b2": rng.normal(size=3)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z"], transB=1), helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "fp16", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 3])],
        [numpy_helper.from_array(value.astype(np.float16), name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_float16_onnx_model_loads_with_float16_tolerances():
    """onnxruntime computes a float16 model in float16 (rounding ~1e-3 of the outputs), which the
    float32 tolerances refused; its own tolerances accept it and the IR holds its exact weights."""
    model = _float16_mlp()
    with pytest.raises(LoadMismatchError, match="deviates"):
        load(model, rtol=ONNX_RTOL, atol=ONNX_ATOL)
    network = load(model)
    x = np.random.default_rng(1).uniform(-1, 1, size=(16, 20)).astype(np.float16)
    reference = run_onnx(model, x)
    ours = _ir_out(network, x.astype(np.float64))
    assert np.max(np.abs(ours - reference)) <= ONNX_FLOAT16_ATOL + ONNX_FLOAT16_RTOL * np.max(np.abs(reference))
    assert network.layers[0].weight.dtype == np.float64


def test_float16_tolerances_still_catch_a_wrong_translation():
    """A mistranslated layer gives O(1) deviations, far beyond the float16 tolerances."""
    model = _float16_mlp()
    network = load(model)
    wrong = ir.Network(network.input_shape, [network.layers[0], network.layers[1],
                                             ir.Dense(network.layers[2].weight * 1.1, network.layers[2].bias)])
    with pytest.raises(LoadMismatchError, match="deviates"):
        check_against(wrong, lambda x: run_onnx(model, x), samples=64, rtol=ONNX_FLOAT16_RTOL,
                      atol=ONNX_FLOAT16_ATOL, dtype=np.float16)
