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

import inspect
import time
from typing import Callable

import torch

from ..errors import InvalidInputError, ShapeMismatchError
from ..ir import Network
from ..regions import Region
from .interval import interval_bounds
from .result import BoundsResult, Stability

METHODS = ("interval", "crown", "lp", "forward", "alpha", "milp")

__all__ = ["bounds", "check_device", "BoundsResult", "Stability", "METHODS"]


def check_device(device, name: str = "device") -> torch.device:
    """``device`` parsed as a torch device that this torch can use (InvalidInputError naming ``name``)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"{name}={device!r} asks for CUDA, but torch.cuda.is_available() is False "
                                    "(no GPU, or a torch build without CUDA); use 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InvalidInputError(f"{name}={device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        try:
            torch.empty(0, device=parsed)
        except (RuntimeError, AssertionError) as exc:
            raise InvalidInputError(f"{name}={device!r}: torch {torch.__version__} cannot use this device "
                                    "(use 'cpu' or 'cuda')") from exc
    return parsed


def _method_function(method: str) -> Callable:
    """The function computing ``method``'s bounds (imported on demand: lp and milp need solvers)."""
    if method == "interval":
        return interval_bounds
    if method == "crown":
        from .crown import crown_bounds

        return crown_bounds
    if method == "alpha":
        from .alpha import alpha_bounds

        return alpha_bounds
    if method == "milp":
        from .milp import milp_bounds

        return milp_bounds
    if method == "forward":
        from .forward import forward_bounds

        return forward_bounds
    from .lp import lp_bounds

    return lp_bounds


def _check_options(method: str, function: Callable, options: dict) -> None:
    """Refuse options ``function`` does not take, listing the ones it does."""
    valid = [p.name for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        accepted = f"its options are: {', '.join(valid)}" if valid else "it takes no options"
        raise InvalidInputError(f"unknown option(s) {', '.join(unknown)} for bounds method {method!r}; {accepted}")


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
    ``layers``, ``threads``, ``time_budget``, ``stats``; ``alpha``: ``iterations``, ``step_size``,
    ``time_budget``); an option the method does not take
    raises InvalidInputError listing the ones it does.
    """
    _validate(network, region, method)
    function = _method_function(method)
    _check_options(method, function, options)
    if device is not None:
        region = region.to(check_device(device))
    start = time.perf_counter()
    lowers, uppers = function(network, region, **options)
    if region.lower.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    _check_finite(lowers, uppers, region)
    return BoundsResult(network, method, tuple(lowers), tuple(uppers), seconds)


def _check_finite(lowers, uppers, region: Region) -> None:
    """Refuse bounds that overflowed float64 into NaN (``inf - inf`` on a huge region of a
    large-weight network): a NaN bound is no bound, and returning it would leave the caller
    to find out from a solver. Infinite bounds stay (they are sound, merely useless)."""
    for i, (low, up) in enumerate(zip(lowers, uppers, strict=True)):
        if bool(torch.isnan(low).any() or torch.isnan(up).any()):
            widest = float((region.upper - region.lower).abs().max())
            raise InvalidInputError(
                f"bounds[{i}] overflowed float64 (NaN) on this region (input box up to {widest:.3g} wide): "
                "eps is too large for the network's weights; give an input domain or a smaller eps")
