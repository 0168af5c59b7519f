"""The zoo networks load from package data and reach their recorded accuracy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from exactverify import zoo

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_NPZ = SHARED / "mnist" / "mnist.npz"
needs_mnist = pytest.mark.skipif(not MNIST_NPZ.is_file(), reason=f"shared MNIST data absent at {MNIST_NPZ}")


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy in float64, the semantics exact verification uses."""
    with torch.no_grad():
        logits = model.double()(torch.as_tensor(x, dtype=torch.float64))
    return float((logits.argmax(1).numpy() == y).mean())


def _widths(model: nn.Sequential) -> tuple[int, ...]:
    linear = [m for m in model if isinstance(m, nn.Linear)]
    assert all(isinstance(m, (nn.Linear, nn.ReLU)) for m in model)
    return (linear[0].in_features, *(m.out_features for m in linear))


def _digest(model: nn.Module) -> str:
    """Same digest as benchmarks/train.py: names and float32 bytes in state_dict order."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_digits_split_is_fixed_stratified_and_scaled():
    x_train, y_train, x_test, y_test = zoo.load_digits_data()
    assert x_train.dtype == x_test.dtype == np.float64
    assert x_train.shape == (1797 - zoo.DIGITS_TEST_SIZE, 64) and x_test.shape == (zoo.DIGITS_TEST_SIZE, 64)
    assert 0.0 <= min(x_train.min(), x_test.min()) and max(x_train.max(), x_test.max()) <= 1.0
    # stratified: every class appears in the test split in proportion (+-1 image)
    counts = np.bincount(y_test, minlength=10)
    expected = np.bincount(np.concatenate([y_train, y_test])) * zoo.DIGITS_TEST_SIZE / 1797
    assert np.all(np.abs(counts - expected) <= 1)
    again = zoo.load_digits_data()
    assert np.array_equal(again[2], x_test) and np.array_equal(again[3], y_test)


def test_digits_network_loads_and_matches_its_record():
    model = zoo.digits_network()
    info = zoo.network_info("digits")
    assert isinstance(model, nn.Sequential) and not model.training
    assert _widths(model) == tuple(info["widths"]) == zoo.ARCHITECTURES["digits"]
    assert _digest(model) == info["weights_sha256"]
    _, _, x_test, y_test = zoo.load_digits_data()
    acc = _accuracy(model, x_test, y_test)
    assert acc >= 0.9
    # recorded in float32 at training time; float64 may flip at most a near-tie or two
    assert abs(acc - info["test_accuracy"]) <= 2 / len(y_test)


def test_mlp_rejects_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        zoo.mlp((784,))
    assert _widths(zoo.mlp((3, 5, 2))) == (3, 5, 2)


def test_load_mnist_names_the_missing_path(tmp_path):
    missing = tmp_path / "nowhere" / "mnist.npz"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        zoo.load_mnist(missing)


def test_load_mnist_scales_a_small_npz(tmp_path):
    path = tmp_path / "tiny.npz"
    images = np.array([[[0] * 28] * 28, [[255] * 28] * 28], dtype=np.uint8)
    labels = np.array([1, 2], np.uint8)
    np.savez(path, x_train=images, y_train=labels, x_test=images[:1], y_test=np.array([3], np.uint8))
    x_train, y_train, x_test, y_test = zoo.load_mnist(path)
    assert x_train.shape == (2, 784) and x_train.dtype == np.float64
    assert x_train[0].max() == 0.0 and x_train[1].min() == 1.0
    assert y_train.tolist() == [1, 2] and y_test.tolist() == [3] and x_test.shape == (1, 784)
    assert zoo.load_mnist(path, flatten=False)[0].shape == (2, 28, 28)
    np.savez(path, x_train=images)
    with pytest.raises(ValueError, match="lacks arrays"):
        zoo.load_mnist(path)


def test_mnist_network_loads_without_data():
    model = zoo.mnist_network()
    assert _widths(model) == zoo.ARCHITECTURES["mnist"] == tuple(zoo.network_info("mnist")["widths"])
    assert _digest(model) == zoo.network_info("mnist")["weights_sha256"]


@pytest.mark.shared_data
@needs_mnist
def test_mnist_network_accuracy_on_test_set():
    _, _, x_test, y_test = zoo.load_mnist(MNIST_NPZ)
    assert x_test.shape == (10000, 784) and 0.0 <= x_test.min() and x_test.max() <= 1.0
    acc = _accuracy(zoo.mnist_network(), x_test, y_test)
    assert acc >= 0.96
    assert abs(acc - zoo.network_info("mnist")["test_accuracy"]) <= 5 / len(y_test)
