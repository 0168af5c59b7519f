"""Affine layers as sparse rows ``y_j = coef_j . x[index_j] + const_j`` (shared by MILP and SMT).

Dense, Conv2d, AvgPool2d (via :meth:`AvgPool2d.as_conv`) and ElementwiseAffine are all
affine maps of the flat input. Writing each output as one sparse row keeps convolutions
cheap to encode (a row has ``C_in/groups * kh * kw`` terms, not the whole input).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from exactverify.ir import AvgPool2d, Conv2d, Dense, ElementwiseAffine, Layer

Row = tuple[np.ndarray, np.ndarray, float]


def affine_rows(layer: Layer, in_shape: tuple[int, ...]) -> Iterator[Row]:
    """Yield ``(index, coef, const)`` for every flat output of an affine ``layer``, in order."""
    if isinstance(layer, Dense):
        for j in range(layer.weight.shape[0]):
            w = layer.weight[j]
            nz = np.flatnonzero(w)
            yield nz, w[nz], float(layer.bias[j])
    elif isinstance(layer, (Conv2d, AvgPool2d)):
        conv = layer if isinstance(layer, Conv2d) else layer.as_conv(in_shape[0])
        yield from _conv_rows(conv, in_shape)
    elif isinstance(layer, ElementwiseAffine):
        scale, shift = layer.full(tuple(in_shape))
        for k, (s, b) in enumerate(zip(scale.reshape(-1), shift.reshape(-1), strict=True)):
            if s == 0.0:
                yield np.zeros(0, dtype=np.int64), np.zeros(0), float(b)
            else:
                yield np.array([k]), np.array([float(s)]), float(b)
    else:
        raise TypeError(f"{layer.kind} is not an affine layer with rows")


def _conv_rows(conv: Conv2d, in_shape: tuple[int, ...]) -> Iterator[Row]:
    """Rows of a (grouped, strided, padded, dilated) convolution.

    The input positions of each output come from unfolding an image of ``index + 1``
    (so that zero padding reads as 0 and is dropped); float64 holds such ints exactly.
    """
    c_in, h, w = in_shape
    c_out, c_in_g, kh, kw = conv.weight.shape
    size = c_in * h * w
    if size >= 2**52:  # pragma: no cover - far beyond what an exact encoder can handle
        raise ValueError("input too large to index exactly")
    image = torch.arange(1, size + 1, dtype=torch.float64).reshape(1, c_in, h, w)
    cols = F.unfold(image, (kh, kw), dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    cols = cols[0].numpy().astype(np.int64) - 1  # (c_in*kh*kw, L); -1 marks padding
    locations = cols.shape[1]
    per_group = c_out // conv.groups
    span = c_in_g * kh * kw
    for co in range(c_out):
        g = co // per_group
        block = cols[g * span:(g + 1) * span]  # rows of this group's input channels
        weight = conv.weight[co].reshape(-1)
        bias = float(conv.bias[co])
        for loc in range(locations):
            index = block[:, loc]
            keep = (index >= 0) & (weight != 0.0)
            yield index[keep], weight[keep], bias


def affine_matrix(layer: Layer, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``(W, b)`` of an affine layer from its rows (for tests and small nets)."""
    rows = list(affine_rows(layer, in_shape))
    n = int(math.prod(in_shape))
    W = np.zeros((len(rows), n))
    b = np.zeros(len(rows))
    for j, (index, coef, const) in enumerate(rows):
        W[j, index] = coef
        b[j] = const
    return W, b
