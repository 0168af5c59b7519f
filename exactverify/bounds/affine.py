"""Affine IR layers as explicit sparse matrices: ``layer(x).flat == M @ x.flat + c``.

The LP relaxation (:mod:`.lp`) needs every affine layer as rows of a constraint matrix;
convolutions become sparse matrices built by index arithmetic (no dense identity pass).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..ir import AvgPool2d, Conv2d, Dense, ElementwiseAffine, Flatten, Layer, Reshape


def conv_matrix(conv: Conv2d, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The convolution on inputs of ``in_shape`` (C, H, W) as a sparse matrix and bias."""
    c_in, h, w = in_shape
    c_out, per_group, kh, kw = conv.weight.shape
    _, ho, wo = conv.output_shape(in_shape)
    co, i, j, ci, a, b = np.meshgrid(np.arange(c_out), np.arange(ho), np.arange(wo), np.arange(per_group),
                                     np.arange(kh), np.arange(kw), indexing="ij")
    group = co // (c_out // conv.groups)
    channel = group * per_group + ci
    r = i * conv.stride[0] - conv.padding[0] + a * conv.dilation[0]
    s = j * conv.stride[1] - conv.padding[1] + b * conv.dilation[1]
    keep = (r >= 0) & (r < h) & (s >= 0) & (s < w)
    rows = ((co * ho + i) * wo + j)[keep]
    cols = ((channel * h + r) * w + s)[keep]
    vals = conv.weight[co, ci, a, b][keep]
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(c_out * ho * wo, c_in * h * w))
    bias = np.repeat(conv.bias, ho * wo)
    return matrix, bias


def affine_matrix(layer: Layer, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(M, c)`` with ``layer(x).flatten() == M @ x.flatten() + c`` for one sample."""
    size = math.prod(in_shape)
    if isinstance(layer, Dense):
        return sp.csr_matrix(np.asarray(layer.weight)), np.array(layer.bias)
    if isinstance(layer, Conv2d):
        return conv_matrix(layer, tuple(in_shape))
    if isinstance(layer, AvgPool2d):
        return conv_matrix(layer.as_conv(in_shape[0]), tuple(in_shape))
    if isinstance(layer, ElementwiseAffine):
        scale, shift = layer.full(tuple(in_shape))
        return sp.diags(scale.reshape(-1)).tocsr(), shift.reshape(-1)
    if isinstance(layer, (Flatten, Reshape)):
        return sp.identity(size, format="csr"), np.zeros(size)
    raise NotImplementedError(f"layer {layer.kind} is not affine")
