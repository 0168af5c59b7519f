"""compose(G, C, between): the composed network equals C(between(G(z))) computed separately."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from exactverify import compose, ir
from exactverify.errors import InvalidInputError, ShapeMismatchError

TOL = 1e-12


def _out(network: ir.Network, x) -> torch.Tensor:
    with torch.no_grad():
        return network.forward(torch.as_tensor(x, dtype=torch.float64))


def _generator(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Unflatten(1, (1, 4, 4)))


def _classifier(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def test_compose_torch_modules_with_scale_shift_pair():
    gen, cls = _generator(), _classifier()
    composed = compose(gen, cls, between=(0.5, 0.5))  # (g + 1) / 2: tanh range -> [0, 1]
    assert composed.input_shape == (3,) and composed.output_shape == (3,)
    z = np.random.default_rng(0).standard_normal((30, 3))
    with torch.no_grad():  # the oracle: the torch modules themselves, in float64
        reference = copy_double(cls)(copy_double(gen)(torch.as_tensor(z)) * 0.5 + 0.5)
    np.testing.assert_allclose(_out(composed, z).numpy(), reference.numpy(), rtol=TOL, atol=TOL)


def copy_double(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double().eval()


def test_compose_inserts_reshape_and_keeps_generator_domain():
    rng = np.random.default_rng(2)
    gen = ir.Network((2,), [ir.Dense(rng.standard_normal((9, 2)), rng.standard_normal(9)), ir.Sigmoid()],
                     input_domain=(-np.ones(2), np.ones(2)), name="G")
    cls = ir.Network((1, 3, 3), [ir.Conv2d(rng.standard_normal((2, 1, 2, 2)), np.zeros(2)), ir.ReLU(),
                                 ir.Flatten(), ir.Dense(rng.standard_normal((2, 8)), np.zeros(2))], name="C")
    between = ir.ElementwiseAffine(2.0, -1.0)
    composed = compose(gen, cls, between)
    assert composed.name == "C∘G"
    assert "Reshape" in [layer.kind for layer in composed.layers]
    np.testing.assert_array_equal(composed.input_domain[0], -np.ones(2))
    z = rng.uniform(-1, 1, (20, 2))
    reference = _out(cls, (_out(gen, z) * 2.0 - 1.0).reshape(20, 1, 3, 3))
    np.testing.assert_allclose(_out(composed, z).numpy(), reference.numpy(), rtol=TOL, atol=TOL)


def test_between_per_pixel_affine_in_classifier_shape_and_network_between():
    rng = np.random.default_rng(3)
    gen = ir.Network((2,), [ir.Dense(rng.standard_normal((4, 2)), np.zeros(4)), ir.Tanh()])
    cls = ir.Network((1, 2, 2), [ir.Flatten(), ir.Dense(rng.standard_normal((3, 4)), np.zeros(3))])
    scale, shift = rng.uniform(0.5, 1.5, (1, 2, 2)), rng.standard_normal((1, 2, 2))
    composed = compose(gen, cls, ir.ElementwiseAffine(scale, shift))  # only fits after the reshape
    z = rng.standard_normal((10, 2))
    reference = _out(cls, _out(gen, z).reshape(10, 1, 2, 2) * torch.as_tensor(scale) + torch.as_tensor(shift))
    np.testing.assert_allclose(_out(composed, z).numpy(), reference.numpy(), rtol=TOL, atol=TOL)
    middle = ir.Network((4,), [ir.ElementwiseAffine(0.5, 0.5), ir.Reshape((1, 2, 2))])
    composed = compose(gen, cls, middle)
    reference = _out(cls, _out(middle, _out(gen, z)))
    np.testing.assert_allclose(_out(composed, z).numpy(), reference.numpy(), rtol=TOL, atol=TOL)


def test_compose_errors_name_shapes_and_between():
    rng = np.random.default_rng(4)
    gen = ir.Network((2,), [ir.Dense(rng.standard_normal((5, 2)), np.zeros(5))])
    cls = ir.Network((4,), [ir.Dense(rng.standard_normal((3, 4)), np.zeros(3))])
    with pytest.raises(ShapeMismatchError, match=r"shape \(5,\) \(5 values\) cannot feed shape \(4,\) \(4 values\)"):
        compose(gen, cls)
    with pytest.raises(InvalidInputError, match="between must consist of affine layers; it contains ReLU"):
        compose(gen, cls, ir.Network((5,), [ir.ReLU()]))
    with pytest.raises(InvalidInputError, match="between must be None"):
        compose(gen, cls, "scale")
    with pytest.raises(ShapeMismatchError, match="between does not fit"):
        compose(gen, ir.Network((5,), [ir.ReLU()]), ir.ElementwiseAffine(np.ones(3), 0.0))
