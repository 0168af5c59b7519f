"""Exact rewrites of a network: batch-norm folding and affine simplifications.

Every rewrite here computes the same function in real arithmetic (float64 results may
differ in the last bits). Loaders use :func:`fold_into_previous` to fold batch norm into
the preceding dense/conv layer; :func:`fold_affine` applies all local simplifications to a
whole network (fewer layers usually means fewer variables for the encoders).
"""

from __future__ import annotations

import numpy as np

from .ir import Conv2d, Dense, ElementwiseAffine, Flatten, Layer, Network, Reshape, Shape


def batchnorm_scale_shift(mean, var, weight, bias, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, shift)`` of a batch norm in eval mode: ``y = scale * x + shift``.

    ``weight``/``bias`` may be ``None`` (affine=False). NaN in any statistic raises via the IR.
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    weight = np.ones_like(mean) if weight is None else np.asarray(weight, dtype=np.float64)
    bias = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = weight / np.sqrt(var + float(eps))
    return scale, bias - mean * scale


def channel_affine(scale: np.ndarray, shift: np.ndarray, shape: Shape) -> ElementwiseAffine:
    """An ElementwiseAffine acting per channel (axis 0) on samples of ``shape``."""
    trailing = (1,) * (len(shape) - 1)
    return ElementwiseAffine(np.reshape(scale, (-1, *trailing)), np.reshape(shift, (-1, *trailing)))


def _per_channel(values: np.ndarray, shape: Shape) -> np.ndarray | None:
    """``values`` broadcast to ``shape`` as one number per channel (axis 0), or None if not constant."""
    try:
        full = np.broadcast_to(values, shape)
    except ValueError:
        return None
    flat = full.reshape(shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].copy()


def fold_into_previous(layer: Layer, affine: ElementwiseAffine, shape: Shape) -> Layer | None:
    """``affine(layer(x))`` as one Dense/Conv2d layer, or None when that is impossible.

    ``shape`` is the output shape of ``layer``. A conv absorbs only per-channel affines.
    """
    if not isinstance(layer, (Dense, Conv2d)):
        return None
    scale, shift = _per_channel(affine.scale, shape), _per_channel(affine.shift, shape)
    if scale is None or shift is None:
        return None
    if isinstance(layer, Dense):
        return Dense(layer.weight * scale[:, None], layer.bias * scale + shift)
    return Conv2d(
        layer.weight * scale[:, None, None, None], layer.bias * scale + shift,
        layer.stride, layer.padding, layer.dilation, layer.groups,
    )


def fold_into_next(affine: ElementwiseAffine, layer: Layer, shape: Shape) -> Layer | None:
    """``layer(affine(x))`` as one Dense/Conv2d layer, or None when that is impossible.

    ``shape`` is the input shape of ``affine``. A conv absorbs only per-channel affines
    and, because zero padding does not pass through a shift, only without padding.
    """
    if isinstance(layer, Dense):
        scale, shift = affine.full(shape)
        scale, shift = scale.reshape(-1), shift.reshape(-1)
        if scale.shape[0] != layer.weight.shape[1]:
            return None
        return Dense(layer.weight * scale[None, :], layer.bias + layer.weight @ shift)
    if isinstance(layer, Conv2d) and layer.groups == 1:
        scale, shift = _per_channel(affine.scale, shape), _per_channel(affine.shift, shape)
        if scale is None or shift is None or (any(layer.padding) and np.any(shift != 0)):
            return None
        weight = layer.weight * scale[None, :, None, None]
        return Conv2d(
            weight, layer.bias + np.einsum("oikl,i->o", layer.weight, shift),
            layer.stride, layer.padding, layer.dilation, layer.groups,
        )
    return None


def merge_affine(first: ElementwiseAffine, second: ElementwiseAffine) -> ElementwiseAffine:
    """``second(first(x))`` as one ElementwiseAffine."""
    return ElementwiseAffine(second.scale * first.scale, second.scale * first.shift + second.shift)


def merge_dense(first: Dense, second: Dense) -> Dense:
    """``second(first(x))`` as one Dense layer."""
    return Dense(second.weight @ first.weight, second.weight @ first.bias + second.bias)


def is_identity(layer: Layer, shape: Shape) -> bool:
    """True for layers that leave every input unchanged (unit affine, no-op reshape)."""
    if isinstance(layer, ElementwiseAffine):
        return bool(np.all(layer.scale == 1.0) and np.all(layer.shift == 0.0))
    if isinstance(layer, (Flatten, Reshape)):
        return tuple(layer.output_shape(shape)) == tuple(shape)
    return False


def simplify_layers(layers: list[Layer], input_shape: Shape, *, merge_dense_layers: bool = True) -> list[Layer]:
    """Apply the local rewrites of :func:`fold_affine` to a layer list until none applies."""
    layers = list(layers)
    changed = True
    while changed:
        changed = False
        shapes = [tuple(input_shape)]
        for layer in layers:
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            replacement = _rewrite(layer, nxt, layers[i + 2] if i + 2 < len(layers) else None,
                                   shapes[i], shapes[i + 1], merge_dense_layers)
            if replacement is not None:
                consumed, new = replacement
                layers[i:i + consumed] = new
                changed = True
                break
    return layers


def _rewrite(layer, nxt, after, shape_in, shape_out, merge_dense_layers):
    """One local rewrite starting at ``layer``: ``(layers consumed, new layers)`` or None."""
    if is_identity(layer, shape_in):
        return 1, []
    if isinstance(layer, (Flatten, Reshape)) and isinstance(nxt, (Flatten, Reshape)):
        return 2, [nxt]
    if isinstance(layer, ElementwiseAffine):
        if isinstance(nxt, ElementwiseAffine):
            return 2, [merge_affine(layer, nxt)]
        folded = fold_into_next(layer, nxt, shape_in) if nxt is not None else None
        if folded is not None:
            return 2, [folded]
        if isinstance(nxt, Flatten) and isinstance(after, Dense):
            folded = fold_into_next(layer, after, shape_in)
            if folded is not None:
                return 3, [nxt, folded]
    if isinstance(layer, (Dense, Conv2d)) and isinstance(nxt, ElementwiseAffine):
        folded = fold_into_previous(layer, nxt, shape_out)
        if folded is not None:
            return 2, [folded]
    if merge_dense_layers and isinstance(layer, Dense) and isinstance(nxt, Dense):
        (m, n), k = layer.weight.shape, nxt.weight.shape[0]
        if k * n <= m * n + k * m:  # merge only when it does not add parameters
            return 2, [merge_dense(layer, nxt)]
    return None


def fold_affine(network: Network, *, merge_dense_layers: bool = True) -> Network:
    """The same function with fewer layers, by exact local rewrites.

    Drops identity affines and no-op reshapes, merges consecutive ElementwiseAffine and
    Flatten/Reshape layers, folds an ElementwiseAffine into the Dense/Conv2d before or
    after it (through a Flatten for Dense), and merges consecutive Dense layers when that
    does not increase the parameter count. Non-linear layers are never moved.
    """
    layers = simplify_layers(list(network.layers), network.input_shape, merge_dense_layers=merge_dense_layers)
    return network.with_layers(layers)
