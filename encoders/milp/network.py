"""Encode a whole network layer by layer through the formulation registry."""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from encoders.backends.base import Backend
from exactverify.bounds import BoundsResult
from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.ir import Clamp, Layer, MaxPool2d, Network

from .formulations import CLAMP, FORMULATIONS, MAXPOOL, Formulation, LayerContext, unsupported

logger = logging.getLogger(__name__)


#: Relative (and absolute) outward padding of every bound after the input before it becomes a
#: variable bound or a big-M: ``l - BOUND_PADDING (1 + |l|)``, ``u + BOUND_PADDING (1 + |u|)``,
#: never across 0 (a stable ReLU stays stable). Exact bounds (CROWN/LP of the first layer
#: over an L1 ball) touch the feasible set; with such a bound SCIP's strong dual reductions
#: in presolve declared an untargeted L1 query of the 784-24-24-24-10 net infeasible although
#: a re-checked counterexample lay inside (the padded model, or presolve off, finds it).
#: Padding only relaxes the model, so "infeasible" stays a proof; 0 turns it off.
BOUND_PADDING = 1e-7
#: The largest bound magnitude accepted as a variable bound or big-M constant. SCIP treats
#: 1e20 as infinity (a bound beyond it stops the model with "error in input data"), and long
#: before that a big-M times the integrality tolerance (1e-6) swamps the network's values.
#: Bounds this large come from an eps-ball without an input domain or huge weights.
MAX_BIG_M = 1e10


def flat_bounds(bounds: BoundsResult, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 numpy bounds of the value entering layer ``i`` (region 0 of the batch)."""
    low = bounds.lower[i][0].detach().cpu().reshape(-1).numpy().astype(np.float64)
    up = bounds.upper[i][0].detach().cpu().reshape(-1).numpy().astype(np.float64)
    return low, up


def padded_bounds(bounds: BoundsResult, i: int, padding: float = BOUND_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """:func:`flat_bounds` widened outward by ``padding`` (see :data:`BOUND_PADDING`); the input (``i == 0``)
    is the region's own box and is never padded."""
    low, up = flat_bounds(bounds, i)
    if i == 0 or padding <= 0:
        return low, up
    wide_low = low - padding * (1.0 + np.abs(low))
    wide_up = up + padding * (1.0 + np.abs(up))
    low = np.where(low >= 0, np.maximum(wide_low, 0.0), wide_low)
    up = np.where(up <= 0, np.minimum(wide_up, 0.0), wide_up)
    return low, up


def check_bounds(network: Network, bounds: BoundsResult) -> None:
    """Bounds must be for ``network``, a batch of one region, finite and ordered (big-M needs that)."""
    if not isinstance(bounds, BoundsResult):
        raise InvalidInputError(f"bounds must be a BoundsResult, got {type(bounds).__name__}")
    if bounds.batch_size != 1:
        raise InvalidInputError(f"bounds must be for a batch of one region, got {bounds.batch_size}")
    if len(bounds.lower) != len(network) + 1:
        raise ShapeMismatchError(f"bounds cover {len(bounds.lower) - 1} layers, network has {len(network)}")
    for i, shape in enumerate(network.shapes):
        low, up = bounds.lower[i], bounds.upper[i]
        if tuple(low.shape[1:]) != tuple(shape) or tuple(up.shape) != tuple(low.shape):
            raise ShapeMismatchError(f"bounds[{i}] has shape {tuple(low.shape)}, network value is {shape}")
        if not (bool(low.isfinite().all()) and bool(up.isfinite().all())):
            raise InvalidInputError(f"bounds[{i}] are not finite; MILP big-M constants need finite bounds "
                                    "(give an input domain or a smaller eps)")
        largest = float(max(low.abs().max(), up.abs().max())) if low.numel() else 0.0
        if largest > MAX_BIG_M:
            raise InvalidInputError(
                f"bounds[{i}] reach {largest:.3g}, beyond MAX_BIG_M = {MAX_BIG_M:g} that a MILP can use as "
                "big-M constants; give an input domain or a smaller eps (or rescale the network's weights)")
        if bool((low > up).any()):
            raise InvalidInputError(f"bounds[{i}] has lower > upper (empty region or unsound bounds)")


def build_registry(maxpool: str = "direct", registry: Mapping[type[Layer], Formulation] | None = None,
                   clamp: str = "direct") -> dict[type[Layer], Formulation]:
    """The default formulations with the chosen max-pool / clamp encodings and ``registry`` on top."""
    if maxpool not in MAXPOOL:
        raise InvalidInputError(f"maxpool must be one of {tuple(MAXPOOL)}, got {maxpool!r}")
    if clamp not in CLAMP:
        raise InvalidInputError(f"clamp must be one of {tuple(CLAMP)}, got {clamp!r}")
    table = dict(FORMULATIONS)
    table[MaxPool2d] = MAXPOOL[maxpool]
    table[Clamp] = CLAMP[clamp]
    table.update(registry or {})
    return table


def encode_network(backend: Backend, network: Network, bounds: BoundsResult, input_vars, *,
                   maxpool: str = "direct", registry: Mapping[type[Layer], Formulation] | None = None,
                   padding: float = BOUND_PADDING) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Add ``network`` on top of ``input_vars``; returns (output vars, values per layer, binaries).

    ``values[i]`` are the variables of the flat value entering layer ``i`` (``values[0]``
    is ``input_vars``, ``values[-1]`` the output). ``bounds`` (a batch of one region),
    widened by ``padding`` (:data:`BOUND_PADDING`), bound every variable and give every big-M.
    """
    check_bounds(network, bounds)
    table = build_registry(maxpool, registry)
    x = np.asarray(input_vars, dtype=np.int64).reshape(-1)
    if len(x) != network.input_size:
        raise ShapeMismatchError(f"input_vars has {len(x)} variables, network input size is {network.input_size}")
    values = [x]
    binaries = 0
    for i, layer in enumerate(network.layers):
        formulation = table.get(type(layer))
        if formulation is None:
            raise unsupported(layer, i, "the exact MILP encoder")
        low, up = padded_bounds(bounds, i, padding)
        out_low, out_up = padded_bounds(bounds, i + 1, padding)
        ctx = LayerContext(i, network.shapes[i], network.shapes[i + 1], low, up, out_low, out_up)
        before = backend.num_vars
        x = np.asarray(formulation(backend, layer, x, ctx), dtype=np.int64)
        if len(x) != len(out_low):
            raise ShapeMismatchError(f"formulation for layer {i} ({layer.kind}) returned {len(x)} of {len(out_low)}")
        binaries += ctx.binaries
        values.append(x)
        logger.debug("layer %d %s: %d new vars, %d binaries, %s", i, layer.kind,
                     backend.num_vars - before, ctx.binaries, dict(ctx.counts))
    return x, values, binaries
