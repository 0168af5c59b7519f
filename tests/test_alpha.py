"""Optimised-slope (alpha-CROWN) output bounds: sound, never looser than their start, and
tighter than CROWN where ReLU slopes have room to move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_bounds import ARCHITECTURES, SAMPLE_TOL, make_region

import exactverify as ev
from exactverify.bounds.alpha import alpha_output_lower
from exactverify.bounds.crown import crown_bounds
from exactverify.errors import InvalidInputError

SAMPLES = 4000


def _sampled_min(network: ev.Network, region: ev.Region) -> torch.Tensor:
    """(B, outputs): the smallest output over sampled points and the centre (an upper
    estimate of the true minimum, so every sound lower bound lies below it)."""
    points = region.sample(SAMPLES, torch.Generator().manual_seed(1))
    middle = region.center if region.center is not None else (region.lower + region.upper) / 2
    points = torch.cat([points, middle.unsqueeze(0)])
    out = network.forward(points.reshape(-1, *region.shape)).reshape(points.shape[0], region.batch_size, -1)
    return out.min(0).values


@pytest.mark.parametrize("kind", ["box", "linf", "l1"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_alpha_is_sound_and_never_looser_than_its_start(arch: str, kind: str) -> None:
    rng = np.random.default_rng(11)
    network = ARCHITECTURES[arch](rng)
    region = make_region(network, kind, rng)
    lowers, uppers = crown_bounds(network, region)
    start = alpha_output_lower(network, region, lowers, uppers, iterations=0)
    tuned = alpha_output_lower(network, region, lowers, uppers, iterations=30)
    sampled = _sampled_min(network, region)
    assert tuned.shape == sampled.shape
    assert bool((tuned <= sampled + SAMPLE_TOL).all()), f"{arch}/{kind}: alpha bound above a sampled output"
    assert bool((tuned >= start - 1e-12).all())
    # iteration 0 is CROWN's own back-substitution; crown_bounds also intersects with intervals
    assert bool((start <= lowers[-1].reshape(start.shape) + 1e-9).all())


def test_alpha_tightens_crown_on_a_deep_relu_net() -> None:
    rng = np.random.default_rng(3)
    network = ARCHITECTURES["deep_narrow"](rng)
    center = torch.as_tensor(rng.uniform(0, 1, size=(8, 3)))
    region = ev.box(center - 0.4, center + 0.4, shape=(3,))
    lowers, uppers = crown_bounds(network, region)
    start = alpha_output_lower(network, region, lowers, uppers, iterations=0)
    tuned = alpha_output_lower(network, region, lowers, uppers, iterations=40)
    gain = (tuned - start)
    assert float(gain.max()) > 1e-3, "optimised slopes never improved a bound"
    assert bool((tuned <= _sampled_min(network, region) + SAMPLE_TOL).all())


def test_alpha_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    network = ARCHITECTURES["mlp_relu"](rng)
    region = make_region(network, "box", rng)
    lowers, uppers = crown_bounds(network, region)
    with pytest.raises(InvalidInputError, match="iterations"):
        alpha_output_lower(network, region, lowers, uppers, iterations=-1)
    with pytest.raises(InvalidInputError, match="step_size"):
        alpha_output_lower(network, region, lowers, uppers, step_size=0)
    with pytest.raises(InvalidInputError, match="lowers/uppers"):
        alpha_output_lower(network, region, lowers[:-1], uppers)


def test_alpha_method_tightens_every_layer_of_a_deep_relu_net() -> None:
    """The ``alpha`` bound method: optimised intermediate bounds leave narrower later values."""
    rng = np.random.default_rng(5)
    network = ARCHITECTURES["deep_narrow"](rng)
    center = torch.as_tensor(rng.uniform(0, 1, size=(4, 3)))
    region = ev.box(center - 0.4, center + 0.4, shape=(3,))
    crown = ev.bounds(network, region, method="crown")
    alpha = ev.bounds(network, region, method="alpha", iterations=30)
    crown_width = float((crown.upper[-1] - crown.lower[-1]).sum())
    alpha_width = float((alpha.upper[-1] - alpha.lower[-1]).sum())
    assert alpha_width < 0.95 * crown_width
    assert sum(alpha.unstable_per_layer()) <= sum(crown.unstable_per_layer())


@pytest.mark.parametrize("kind", ["box", "linf"])
def test_bound_minimisers_lie_in_the_region_and_are_exact_on_a_linear_net(kind: str) -> None:
    """``with_points``: every point is in its region; where the network is affine (every ReLU
    stable on the region) the linear bound is the function itself, so it is attained there."""
    rng = np.random.default_rng(5)
    network = ARCHITECTURES["mlp_relu"](rng)
    region = make_region(network, kind, rng)
    lowers, uppers = crown_bounds(network, region)
    bound, points = alpha_output_lower(network, region, lowers, uppers, iterations=5, with_points=True)
    batch, outputs = bound.shape
    assert points.shape == (batch, outputs, *network.input_shape)
    for row in range(outputs):
        assert bool(region.contains(points[:, row]).all())
        values = network.forward(points[:, row]).reshape(batch, -1)[:, row]
        assert bool((values >= bound[:, row] - SAMPLE_TOL).all())  # a lower bound holds at its minimiser
    weights = rng.normal(size=(3, 4))
    affine = ev.Network((4,), (ev.ir.Dense(weights, np.zeros(3)),), ((0.0,) * 4, (1.0,) * 4), "affine")
    box_region = ev.box(torch.zeros(2, 4), torch.tensor([[1.0, 0.5, 1.0, 0.2], [0.3, 1.0, 1.0, 1.0]]), shape=(4,))
    lowers, uppers = crown_bounds(affine, box_region)
    bound, points = alpha_output_lower(affine, box_region, lowers, uppers, iterations=0, with_points=True)
    for row in range(3):
        values = affine.forward(points[:, row])[:, row]
        assert torch.allclose(values, bound[:, row], atol=1e-9)


def test_bound_minimisers_need_a_box_region() -> None:
    rng = np.random.default_rng(5)
    network = ARCHITECTURES["mlp_relu"](rng)
    region = make_region(network, "l1", rng)
    lowers, uppers = crown_bounds(network, region)
    with pytest.raises(InvalidInputError, match="with_points"):
        alpha_output_lower(network, region, lowers, uppers, with_points=True)


def test_adam_matches_torch_optim_adam() -> None:
    """The functional Adam of alpha-CROWN takes exactly torch.optim.Adam's steps."""
    from exactverify.bounds.alpha import Adam

    torch.manual_seed(0)
    ours = torch.randn(5, 3, requires_grad=True)
    theirs = ours.detach().clone().requires_grad_(True)
    target = torch.randn(5, 3)
    pairs = ((ours, Adam([ours], lr=0.05)), (theirs, torch.optim.Adam([theirs], lr=0.05)))
    for _ in range(20):
        for param, optimizer in pairs:
            optimizer.zero_grad()
            ((param - target) ** 3).abs().sum().backward()
            optimizer.step()
    torch.testing.assert_close(ours, theirs, rtol=0.0, atol=0.0)
    assert not torch.equal(ours, target)  # it moved


def test_alpha_bounds_do_not_import_torch_dynamo() -> None:
    """torch.optim's step wrapper imports torch._dynamo on first use (over a second, unseen by a
    query's time limit); alpha bounds in a fresh process must not pay it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, exactverify as ev\nfrom exactverify import zoo\n"
            "net = ev.load(zoo.digits_network(), input_shape=(64,))\n"
            "ev.bounds(net, ev.linf_ball(np.full(64, 0.5), 0.05, domain=(0, 1)), method='alpha')\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
