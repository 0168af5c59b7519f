"""Generators and classifiers for global robustness: architectures, committed digits8 weights, augmentation.

Oracles: the torch modules themselves in float64 (for the IR of C∘G), numpy rolls and
rotations (for the affine warp), the JSON sidecars written at training time (for quality
and accuracy, re-measured on fresh samples).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import exactverify
from exactverify import zoo
from exactverify.compose import compose
from exactverify.errors import InvalidInputError, LoadMismatchError
from exactverify.generative import models as gm
from exactverify.generative.augment import affine_matrices, random_affine, warp
from exactverify.generative.training import (
    GanConfig,
    accuracy,
    generator_quality,
    surrogate_output,
    train_gan,
    weights_digest,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: IR forward vs torch float64: the same operations in a possibly different order.
FORWARD_TOL = 1e-10
#: Grid-sample identity / integer shifts reproduce pixels up to float32 rounding.
WARP_TOL = 1e-5
#: A fresh quality sample of QUALITY_N draws may fall below the committed number by at most this
#: (binomial sd at p = 0.9, n = 1000 is 0.0095; 0.05 is over 5 sd).
QUALITY_SLACK = 0.05
QUALITY_N = 1000
#: Recomputed test accuracy may differ from the sidecar by one or two borderline images (BLAS order).
ACCURACY_SLACK = 2.5 / 360
MAX_COMMITTED_BYTES = 100_000


def _double(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval()


# --- architectures ---------------------------------------------------------------------------------

def test_generator_mlp_is_the_papers_shape_with_hardtanh_output():
    g = gm.generator_mlp()
    linears = [m for m in g if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 256), (256, 512), (512, 1024), (1024, 784)]
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in g) == 3
    assert isinstance(g[-1], nn.Hardtanh) and (g[-1].min_val, g[-1].max_val) == (0.0, 1.0)
    with torch.no_grad():
        out = g(torch.randn(50, 10) * 10)
    assert out.shape == (50, 784) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(("capacity", "widths"), [
    ("small", [784, 32, 32, 10]), ("medium", [784, 128, 128, 10]), ("large", [784, 256, 256, 256, 10])])
def test_classifier_mlp_capacities_mnist(capacity, widths):
    c = gm.classifier_mlp(capacity)
    linears = [m for m in c if isinstance(m, nn.Linear)]
    assert [linears[0].in_features] + [m.out_features for m in linears] == widths
    assert all(isinstance(m, (nn.Linear, nn.ReLU)) for m in c) and isinstance(c[-1], nn.Linear)


@pytest.mark.parametrize(("capacity", "widths"), [
    ("small", (64, 16, 10)), ("medium", (64, 32, 32, 10)), ("large", (64, 64, 64, 10))])
def test_classifier_widths_digits8(capacity, widths):
    assert gm.classifier_widths(capacity, 64) == widths


def test_invalid_arguments_name_the_parameter(tmp_path):
    with pytest.raises(InvalidInputError, match="capacity"):
        gm.classifier_mlp("huge")
    with pytest.raises(InvalidInputError, match="digit"):
        gm.load_generator(10, "digits8")
    with pytest.raises(InvalidInputError, match="dataset"):
        gm.load_generator(3, "cifar")
    with pytest.raises(InvalidInputError, match="latent_dim"):
        gm.generator_mlp(0)


def test_missing_mnist_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_generative.py generators --digits 3"):
        gm.load_generator(3, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="train_generative.py classifiers"):
        gm.load_classifier("small", root=tmp_path)


def test_weights_of_the_wrong_architecture_raise_load_mismatch(tmp_path):
    torch.save(gm.classifier_mlp("small").state_dict(), tmp_path / gm.classifier_file("medium"))
    with pytest.raises(LoadMismatchError, match="architecture"):
        gm.load_classifier("medium", root=tmp_path)


# --- committed digits8 models ------------------------------------------------------------------------

@pytest.mark.parametrize("digit", range(10))
def test_digits8_generator_loads_and_matches_its_sidecar(digit):
    g = gm.load_generator(digit, "digits8")
    assert not g.training and all(p.dtype == torch.float32 for p in g.parameters())
    info = gm.generator_info(digit, "digits8")
    assert info["seed"] == 1000 + digit and info["widths"] == [4, 32, 64, 64]
    assert info["hyperparameters"]["steps"] > 0 and info["torch_version"]
    assert weights_digest(g.state_dict()) == info["weights_sha256"]
    assert (gm.PACKAGE_DATA_DIR / gm.generator_file(digit, "digits8")).stat().st_size < MAX_COMMITTED_BYTES
    with torch.no_grad():
        images = g(torch.randn(200, 4, generator=torch.Generator().manual_seed(digit)))
    assert images.shape == (200, 64) and images.min() >= 0.0 and images.max() <= 1.0


@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize("capacity", gm.CAPACITIES)
def test_digits8_classifier_accuracy_matches_its_sidecar(capacity, augmented):
    c = gm.load_classifier(capacity, augmented, "digits8")
    info = gm.classifier_info(capacity, augmented, "digits8")
    assert info["augmented"] is augmented and info["widths"] == list(gm.classifier_widths(capacity, 64))
    assert weights_digest(c.state_dict()) == info["weights_sha256"]
    assert (gm.PACKAGE_DATA_DIR / gm.classifier_file(capacity, augmented, "digits8")).stat().st_size \
        < MAX_COMMITTED_BYTES
    _, _, x_test, y_test = zoo.load_digits_data()
    measured = accuracy(c, x_test, y_test)
    assert abs(measured - info["test_accuracy"]) <= ACCURACY_SLACK
    assert measured > 0.9


def test_digits8_generator_quality_holds_on_a_fresh_sample():
    judge = gm.load_classifier("medium", False, "digits8")
    for digit in range(10):
        committed = gm.generator_info(digit, "digits8")["quality"]
        fresh = generator_quality(gm.load_generator(digit, "digits8"), judge, digit, QUALITY_N, seed=777 + digit)
        assert fresh >= committed - QUALITY_SLACK, f"digit {digit}: fresh {fresh} vs committed {committed}"
        assert fresh >= 0.85, f"digit {digit}: generator quality {fresh} below 0.85"


@pytest.mark.parametrize(("digit", "capacity"), [(3, "small"), (8, "large")])
def test_digits8_composition_is_exactly_encodable_and_matches_torch(digit, capacity):
    g, c = gm.load_generator(digit, "digits8"), gm.load_classifier(capacity, True, "digits8")
    net_g = exactverify.load(g)
    assert net_g.input_shape == (4,) and net_g.output_shape == (64,)
    composed = compose(g, c)
    assert composed.input_shape == (4,) and composed.output_shape == (10,)
    assert {layer.kind for layer in composed.layers} <= {"Dense", "LeakyReLU", "Clamp", "ReLU"}, \
        [layer.kind for layer in composed.layers]
    z = np.random.default_rng(digit).standard_normal((100, 4)) * 2.0  # also far into the tails
    with torch.no_grad():
        reference = _double(c)(_double(g)(torch.as_tensor(z))).numpy()
        ours = composed.forward(torch.as_tensor(z, dtype=torch.float64))
    np.testing.assert_allclose(np.asarray(ours), reference, rtol=FORWARD_TOL, atol=FORWARD_TOL)


# --- augmentation ----------------------------------------------------------------------------------

def _images(count=6, side=8, seed=0):
    return torch.rand(count, side * side, generator=torch.Generator().manual_seed(seed))


def test_zero_distortion_is_the_identity():
    x = _images()
    out = random_affine(x, torch.Generator().manual_seed(1), 0.0, 0.0, 0.0)
    torch.testing.assert_close(out, x, atol=WARP_TOL, rtol=0)


def test_one_pixel_shift_moves_the_image_by_one_pixel():
    x = _images(count=1, side=8).reshape(1, 8, 8)
    theta = affine_matrices(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                            torch.tensor([[1.0, 0.0]], dtype=torch.float64), 8)
    out = warp(x.reshape(1, 64), theta).reshape(8, 8)
    # affine_grid maps output to input coordinates: output column j reads input column j + 1
    expected = torch.zeros(8, 8)
    expected[:, :-1] = x[0, :, 1:]
    torch.testing.assert_close(out, expected, atol=WARP_TOL, rtol=0)


def test_quarter_turn_is_a_90_degree_rotation():
    x = _images(count=1, side=8).reshape(1, 1, 8, 8)
    theta = affine_matrices(torch.tensor([90.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                            torch.zeros(1, 2, dtype=torch.float64), 8)
    out = warp(x, theta)[0, 0]
    candidates = [torch.rot90(x[0, 0], k) for k in (1, 3)]
    assert any(torch.allclose(out, c, atol=WARP_TOL) for c in candidates)


def test_random_affine_is_seeded_keeps_range_and_shape():
    x = _images(count=20, side=28)
    a = random_affine(x, torch.Generator().manual_seed(5))
    b = random_affine(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0 + 1e-6
    assert not torch.allclose(a, x)
    with pytest.raises(InvalidInputError, match="max_shear"):
        random_affine(x, None, max_shear=-1.0)
    with pytest.raises(InvalidInputError, match="square"):
        random_affine(torch.zeros(2, 10))


# --- training --------------------------------------------------------------------------------------

def test_surrogate_equals_hardtanh_inside_and_leaks_outside():
    g = gm.generator_mlp(2, (8,), 5)
    z = torch.randn(40, 2) * 5
    with torch.no_grad():
        pre = g[:-1](z)
        out = g(z)
        sur = surrogate_output(g, z, 0.01)
    torch.testing.assert_close(out, pre.clamp(0, 1))
    torch.testing.assert_close(sur, out + 0.01 * (pre - out))


def test_train_gan_returns_an_exact_hardtanh_generator():
    data = np.random.default_rng(0).uniform(0, 1, (64, 16))
    g, stats = train_gan(data, 3, (8,), GanConfig(steps=20, batch_size=16, disc_widths=(8,)), seed=0, log_every=0)
    assert isinstance(g[-1], nn.Hardtanh) and not g.training and stats["train_seconds"] >= 0
    assert {layer.kind for layer in exactverify.load(g).layers} == {"Dense", "LeakyReLU", "Clamp"}
    g2, _ = train_gan(data, 3, (8,), GanConfig(steps=20, batch_size=16, disc_widths=(8,)), seed=0, log_every=0)
    assert weights_digest(g.state_dict()) == weights_digest(g2.state_dict())  # seeded


# --- MNIST models (git-ignored weights, shared data) ----------------------------------------------

def _mnist_models_or_skip():
    if not (SHARED_DATA / "mnist" / "mnist.npz").is_file():
        pytest.skip(f"MNIST not found under {SHARED_DATA}")
    try:
        return gm.load_generator(3), gm.load_classifier("small")
    except FileNotFoundError as exc:
        pytest.skip(f"MNIST generative models not trained: {exc}")


@pytest.mark.shared_data
def test_mnist_g3_and_small_classifier_compose_and_match_torch():
    g, c = _mnist_models_or_skip()
    composed = compose(g, c)
    assert composed.input_shape == (10,) and composed.output_shape == (10,)
    z = np.random.default_rng(3).standard_normal((20, 10))
    with torch.no_grad():
        reference = _double(c)(_double(g)(torch.as_tensor(z))).numpy()
        ours = composed.forward(torch.as_tensor(z, dtype=torch.float64))
    np.testing.assert_allclose(np.asarray(ours), reference, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    info = json.loads((gm.DEFAULT_MODELS_DIR / "mnist_gen_3.json").read_text())
    assert weights_digest(g.state_dict()) == info["weights_sha256"]


@pytest.mark.shared_data
def test_mnist_small_classifier_accuracy_matches_its_sidecar():
    _, c = _mnist_models_or_skip()
    _, _, x_test, y_test = zoo.load_mnist()
    info = gm.classifier_info("small")
    assert abs(accuracy(c, x_test, y_test) - info["test_accuracy"]) <= 5 / len(y_test)


def test_missing_weights_are_an_exactverify_error_and_still_a_file_not_found_error(tmp_path):
    from exactverify.errors import ExactVerifyError

    with pytest.raises(ExactVerifyError, match="missing at") as caught:
        gm.load_generator(3, root=tmp_path)
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ExactVerifyError, match="missing at"):
        gm.classifier_info("small", root=tmp_path)


def test_weights_that_are_not_a_safe_state_dict_are_refused_without_running_them(tmp_path):
    """A pickle with a __reduce__ payload in place of a generator's weights: refused by
    weights_only=True with a LoadMismatchError (torch's own message suggests weights_only=False)."""
    import pickle

    from exactverify.errors import LoadMismatchError

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / gm.generator_file(3, "mnist")).write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(LoadMismatchError, match="not a state_dict that loads with weights_only=True"):
        gm.load_generator(3, root=tmp_path)
    assert not marker.exists()
