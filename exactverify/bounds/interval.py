"""Interval bound propagation: the cheapest sound bounds, batched in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ir import AvgPool2d, Conv2d, Dense, ElementwiseAffine, Layer, MaxPool2d
from ..regions import Region


def _t(array, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(array, dtype=like.dtype, device=like.device)  # copies: IR arrays are read-only


def interval_layer(layer: Layer, low: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate the box ``[low, up]`` (B, *shape) through one layer, soundly."""
    if isinstance(layer, Dense):
        w = _t(layer.weight, low)
        mid, rad = (up + low) / 2, (up - low) / 2
        center = mid @ w.T + _t(layer.bias, low)
        radius = rad @ w.abs().T
        return center - radius, center + radius
    if isinstance(layer, (Conv2d, AvgPool2d)):
        conv = layer if isinstance(layer, Conv2d) else layer.as_conv(low.shape[1])
        w = _t(conv.weight, low)
        mid, rad = (up + low) / 2, (up - low) / 2
        center = F.conv2d(mid, w, _t(conv.bias, low), conv.stride, conv.padding, conv.dilation, conv.groups)
        radius = F.conv2d(rad, w.abs(), None, conv.stride, conv.padding, conv.dilation, conv.groups)
        return center - radius, center + radius
    if isinstance(layer, ElementwiseAffine):
        a, b = layer.forward(low), layer.forward(up)
        return torch.minimum(a, b), torch.maximum(a, b)
    if isinstance(layer, MaxPool2d) or layer.elementwise or type(layer).__name__ in ("Flatten", "Reshape"):
        # monotone non-decreasing maps: bounds map through directly
        return layer.forward(low), layer.forward(up)
    raise NotImplementedError(f"interval bounds do not support layer {layer.kind}")


def interval_bounds(network, region: Region) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Boxes on the value entering every layer and on the output."""
    low, up = region.lower, region.upper
    lowers, uppers = [low], [up]
    for layer in network.layers:
        low, up = interval_layer(layer, low, up)
        lowers.append(low)
        uppers.append(up)
    return lowers, uppers
