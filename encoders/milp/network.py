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


def flat_bounds(bounds: BoundsResult, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 numpy bounds of the value entering layer ``i`` (region 0 of the batch)."""
    low = bounds.lower[i][0].detach().cpu().reshape(-1).numpy().astype(np.float64)
    up = bounds.upper[i][0].detach().cpu().reshape(-1).numpy().astype(np.float64)
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
            raise InvalidInputError(f"bounds[{i}] are not finite; MILP big-M constants need finite bounds")
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
                   ) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Add ``network`` on top of ``input_vars``; returns (output vars, values per layer, binaries).

    ``values[i]`` are the variables of the flat value entering layer ``i`` (``values[0]``
    is ``input_vars``, ``values[-1]`` the output). ``bounds`` (a batch of one region)
    bound every variable and give every big-M.
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
        low, up = flat_bounds(bounds, i)
        out_low, out_up = flat_bounds(bounds, i + 1)
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
