"""Optimised-slope (alpha-CROWN) output bounds: sound, never looser than their start, and
tighter than CROWN where ReLU slopes have room to move."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import exactverify as ev
from exactverify.bounds.alpha import alpha_output_lower
from exactverify.bounds.crown import crown_bounds
from exactverify.errors import InvalidInputError

from test_bounds import ARCHITECTURES, SAMPLE_TOL, make_region

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
