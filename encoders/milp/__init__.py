"""MILP encodings of networks, input regions and output specifications (big-M from bounds).

:func:`encode_query` builds the whole model "some x in the region is mapped into the
spec" on a fresh backend; the pieces (:func:`encode_region`, :func:`encode_network`,
:func:`encode_output_spec`) can be used on their own. Importing this package does not
import z3 (see :mod:`encoders.smt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from encoders.backends.base import Backend
from exactverify.bounds import BoundsResult
from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.ir import Layer, Network
from exactverify.regions import Region
from exactverify.specs import OutputSpec

from .formulations import CLAMP, FORMULATIONS, MAXPOOL, Formulation, LayerContext, relu_of
from .network import BOUND_PADDING, build_registry, encode_network, padded_bounds
from .region import L1_ENCODINGS, encode_region, encode_region_counted
from .spec import encode_output_spec, encode_output_spec_counted, encode_spec_slack

logger = logging.getLogger(__name__)

__all__ = [
    "BOUND_PADDING", "CLAMP", "FORMULATIONS", "Formulation", "L1_ENCODINGS", "LayerContext", "MAXPOOL", "MilpEncoding",
    "build_registry", "encode_network", "encode_output_spec", "encode_query", "encode_region", "encode_spec_slack",
    "relu_of",
]


@dataclass
class MilpEncoding:
    """A built MILP model of one query and the variable indices a caller needs."""

    backend: Backend
    input: np.ndarray  # var indices of the flat input
    output: np.ndarray  # var indices of the flat output
    values: list[np.ndarray]  # var indices of the flat value entering layer i (len(network) + 1)
    distortion: int | None  # var index of ||x - center|| in the region's norm, if requested
    binaries: int  # number of binary variables added (network + region + spec)
    unstable: list[int] = field(default_factory=list)  # unstable ReLUs per ReLU/LeakyReLU layer
    slack: int | None = None  # var index of the spec's slack (``slack=True``); else the spec is a constraint


def encode_query(backend: Backend, network: Network, region: Region, spec: OutputSpec, bounds: BoundsResult, *,
                 distortion: bool = False, l1: str = "epigraph", maxpool: str = "direct",
                 registry: Mapping[type[Layer], Formulation] | None = None, slack: bool = False,
                 padding: float = BOUND_PADDING) -> MilpEncoding:
    """Encode "x in ``region`` and ``network(x)`` in ``spec``" into ``backend`` (a fresh model).

    ``bounds`` must be sound for ``region`` (a batch of one); no objective is set: the
    caller minimises ``encoding.distortion`` or an output, or just asks for feasibility.
    With ``slack``, the spec is not a constraint: ``encoding.slack`` is a variable at most
    the spec's slack (:func:`encode_spec_slack`), ``>= 0`` exactly on the spec, for the
    caller to maximise. ``padding`` widens every bound after the input (:data:`BOUND_PADDING`).
    """
    if not isinstance(network, Network):
        raise InvalidInputError(f"network must be an exactverify Network, got {type(network).__name__}")
    if isinstance(region, Region) and region.shape != network.input_shape:
        raise ShapeMismatchError(f"region has sample shape {region.shape}, network input is {network.input_shape}")
    x, dist, region_bins = encode_region_counted(backend, region, l1=l1, distortion=distortion)
    y, values, net_bins = encode_network(backend, network, bounds, x, maxpool=maxpool, registry=registry,
                                         padding=padding)
    out_low, out_up = padded_bounds(bounds, len(network), padding)
    slack_var = None
    if slack:
        slack_var, spec_bins = encode_spec_slack(backend, y, spec, out_low, out_up)
    else:
        spec_bins = encode_output_spec_counted(backend, y, spec, out_low, out_up)
    encoding = MilpEncoding(backend, x, y, values, dist, region_bins + net_bins + spec_bins,
                            bounds.unstable_per_layer(), slack_var)
    logger.debug("query %s: %d vars, %d binaries (region %d, network %d, spec %d), unstable per layer %s",
                 network.name, backend.num_vars, encoding.binaries, region_bins, net_bins, spec_bins,
                 encoding.unstable)
    return encoding
