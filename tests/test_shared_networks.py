"""Public benchmark networks (../shared/data): ACAS Xu (.onnx and .nnet) and MNIST FC (.onnx).

Oracles: onnxruntime on a float64 copy of each ONNX file (same weights, float64 arithmetic,
so structural agreement can be demanded to 1e-6), onnxruntime on the original float32
file (agreement limited by float32 rounding), and the .nnet and .onnx versions of the same
ACAS Xu network against each other (their weights differ by float32 rounding of the text).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from exactverify import load

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ACAS_ONNX = DATA / "vnncomp2021" / "acasxu"
ACAS_NNET = DATA / "acasxu_nnet"
MNISTFC = DATA / "vnncomp2021" / "mnistfc"

#: IR (float64) vs onnxruntime on the float64 copy, and .nnet vs .onnx: the brief's 1e-6.
AGREE_TOL = 1e-6
#: IR vs onnxruntime in float32 (7 significant digits; MNIST 256x6 measured 4.4e-6 on outputs of size ~1).
FLOAT32_TOL = 2e-5
POINTS = 50

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} is absent"),
]




def _as_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a float32 MLP model computing in float64 (initializers and value types cast)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for index, init in enumerate(model.graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float64)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, init.name))
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


def _ort_outputs(model: onnx.ModelProto, x: np.ndarray, dtype) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1].astype(dtype)})[0].reshape(1, -1)
                           for i in range(len(x))])


def _ir(network, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1).numpy()


def _agree_with_ort(network, path: Path, x: np.ndarray) -> None:
    model = onnx.load(str(path))
    ours = _ir(network, x)
    exact = _ort_outputs(_as_double(model), x, np.float64)
    assert np.abs(ours - exact).max() <= AGREE_TOL, f"{path.name}: IR vs float64 onnxruntime"
    rounded = _ort_outputs(model, x, np.float32)
    assert np.abs(ours - rounded).max() <= FLOAT32_TOL, f"{path.name}: IR vs float32 onnxruntime"


def test_all_acasxu_networks_agree_between_onnx_nnet_and_onnxruntime():
    pytest.importorskip("onnxruntime")
    onnx_files = sorted(ACAS_ONNX.glob("ACASXU_run2a_*_batch_2000.onnx"))
    assert len(onnx_files) == 45
    rng = np.random.default_rng(0)
    for path in onnx_files:
        from_onnx = load(path)
        from_nnet = load(ACAS_NNET / f"{path.stem}.nnet", normalized=True)
        assert from_onnx.input_shape == (1, 1, 5) and from_nnet.input_shape == (5,)
        low, high = from_nnet.input_domain
        x = rng.uniform(low, high, (POINTS, 5)).astype(np.float32).astype(np.float64)
        x_onnx = x.reshape(POINTS, 1, 1, 5)
        deviation = np.abs(_ir(from_onnx, x_onnx) - _ir(from_nnet, x)).max()
        assert deviation <= AGREE_TOL, f"{path.name}: .onnx vs .nnet differ by {deviation:.2e}"
        _agree_with_ort(from_onnx, path, x_onnx)


def test_acasxu_raw_nnet_is_the_normalised_network_between_unit_maps():
    nnet = ACAS_NNET / "ACASXU_run2a_1_1_batch_2000.nnet"
    raw, normalised = load(nnet), load(nnet, normalized=True)
    low, high = raw.input_domain
    np.testing.assert_allclose(low, [0.0, -3.141593, -3.141593, 100.0, 0.0])
    np.testing.assert_allclose(high, [60760.0, 3.141593, 3.141593, 1200.0, 1200.0])
    x = np.random.default_rng(1).uniform(low, high, (POINTS, 5))
    mean = np.array([19791.091, 0.0, 0.0, 650.0, 600.0])
    spread = np.array([60261.0, 6.28318530718, 6.28318530718, 1100.0, 1200.0])
    expected = _ir(normalised, (x - mean) / spread) * 373.94992 + 7.5188840201005975
    np.testing.assert_allclose(_ir(raw, x), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", ["mnist-net_256x2", "mnist-net_256x4", "mnist-net_256x6"])
def test_mnistfc_networks_agree_with_onnxruntime(name):
    pytest.importorskip("onnxruntime")
    path = MNISTFC / f"{name}.onnx"
    network = load(path)
    assert network.input_shape == (784, 1) and network.output_shape == (10,)
    x = np.random.default_rng(2).uniform(0.0, 1.0, (POINTS, 784, 1)).astype(np.float32).astype(np.float64)
    _agree_with_ort(network, path, x)
