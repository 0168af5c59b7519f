"""Sound bounds on every neuron of a network over a batch of input regions.

Methods (see :func:`bounds`):
- ``interval``: interval arithmetic, layer by layer.
- ``crown``: symbolic backward linear bounds (CROWN/DeepPoly), exact dual norm for L1.
- ``lp``: per-neuron LP tightening on top of CROWN, as MIPVerify's progressive tightening.
- ``alpha``: CROWN with optimised ReLU lower slopes (alpha-CROWN) for the unstable
  neurons of every layer and for the output; as tight as LP tightening on MNIST MLPs, faster.
- ``milp``: CROWN with the inputs of the second ReLU layer tightened by one small MILP per
  unstable neuron (SCIP dual bounds, padded); for the hard decisions of exact queries.
- ``forward``: forward symbolic bounds (cheap for low-dimensional inputs such as a
  generator's latent code), with backward CROWN on small values such as the output.
"""

from __future__ import annotations

import time

import torch

from ..errors import InvalidInputError, ShapeMismatchError
from ..ir import Network
from ..regions import Region
from .interval import interval_bounds
from .result import BoundsResult, Stability

METHODS = ("interval", "crown", "lp", "forward", "alpha", "milp")

__all__ = ["bounds", "BoundsResult", "Stability", "METHODS"]


def _validate(network: Network, region: Region, method: str) -> None:
    if not isinstance(network, Network):
        raise InvalidInputError(f"network must be an exactverify Network, got {type(network).__name__}")
    if not isinstance(region, Region):
        raise InvalidInputError(f"region must be an exactverify Region, got {type(region).__name__}")
    if region.shape != network.input_shape:
        raise ShapeMismatchError(
            f"region has sample shape {region.shape} but the network's input shape is {network.input_shape}"
        )
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")


def bounds(network: Network, region: Region, method: str = "crown", device=None, **options) -> BoundsResult:
    """Bounds on the value entering every layer of ``network`` for each region of ``region``.

    ``device`` (e.g. ``"cuda"``) runs interval/CROWN there; results come back on that
    device. ``options`` go to the method (``lp``: ``time_limit`` per LP, ``layers``; ``milp``:
    ``layers``, ``threads``, ``time_budget``, ``stats``).
    """
    _validate(network, region, method)
    if device is not None:
        region = region.to(torch.device(device))
    start = time.perf_counter()
    if method == "interval":
        lowers, uppers = interval_bounds(network, region)
    elif method == "crown":
        from .crown import crown_bounds

        lowers, uppers = crown_bounds(network, region, **options)
    elif method == "alpha":
        from .alpha import alpha_bounds

        lowers, uppers = alpha_bounds(network, region, **options)
    elif method == "milp":
        from .milp import milp_bounds

        lowers, uppers = milp_bounds(network, region, **options)
    elif method == "forward":
        from .forward import forward_bounds

        lowers, uppers = forward_bounds(network, region, **options)
    else:
        from .lp import lp_bounds

        lowers, uppers = lp_bounds(network, region, **options)
    if region.lower.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return BoundsResult(network, method, tuple(lowers), tuple(uppers), seconds)
